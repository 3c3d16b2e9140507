"""HTTP and WebSocket routes, one blueprint per resource."""
