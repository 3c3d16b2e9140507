"""What the server does, apart from how it is asked over HTTP: plain functions and small
classes with no Quart in them (web/ is the HTTP layer over them). Their errors are in
`errors.py`.
"""
