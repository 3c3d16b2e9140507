// What the end-to-end runs of ui-test/ share: free loopback ports, the server and the scripted
// LLM started as child processes with an empty home in a scratch folder (each in a process
// group of its own, stopped as a whole at the end), and waiting for a condition by polling.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "..");
export const python = resolve(process.env.PYTHON ?? join(root, ".venv/bin/python"));

export function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

export async function waitFor(url, { status = 200, seconds = 120 } = {}) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    try {
      const answer = await fetch(url);
      if (answer.status === status) return answer;
    } catch {
      // not listening yet
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  throw new Error(`${url} did not answer ${status} within ${seconds} s`);
}

export async function until(what, check, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

/** Child processes in a scratch folder (their HOME is an empty `home` in it). */
export class Processes {
  constructor() {
    this.scratch = mkdtempSync(join(tmpdir(), "trio-openhands-ui-"));
    mkdirSync(join(this.scratch, "home"), { recursive: true });
    this.children = [];
    this.stopping = false;
  }

  start(name, command, args, env = {}) {
    const child = spawn(command, args, {
      cwd: this.scratch,
      env: { ...process.env, HOME: join(this.scratch, "home"), ...env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group: stopped as a whole at the end
    });
    const log = [];
    for (const stream of [child.stdout, child.stderr]) {
      stream.on("data", (chunk) => log.push(String(chunk)));
    }
    child.on("exit", (code) => {
      if (!this.stopping) {
        console.error(`${name} exited (${code}):\n${log.join("").slice(-3000)}`);
      }
    });
    this.children.push(child);
    return child;
  }

  /** The scripted LLM on `llmPort` and trio-openhands on `serverPort`, both answering. */
  async startServers(serverPort, llmPort) {
    this.start("scripted LLM", python, [
      "-m", "trio_openhands.testing.fake_llm", "--port", `${llmPort}`,
    ]);
    if (process.env.REFERENCE_PYTHON) {
      // The same run against the reference server, to compare (see Development.md).
      this.start("openhands-agent-server", process.env.REFERENCE_PYTHON, [
        "-m", "openhands.agent_server", "--host", "127.0.0.1", "--port", `${serverPort}`,
      ], { OH_SECRET_KEY: "ui-test", LOG_LEVEL: "WARNING" });
    } else {
      this.start("trio-openhands", python, [
        "-m", "trio_openhands.cli",
        "--port", `${serverPort}`,
        "--conversations-dir", join(this.scratch, "conversations"),
        "--workspace-dir", join(this.scratch, "project"),
        "--log-level", "WARNING",
      ]);
    }
    await waitFor(`http://127.0.0.1:${llmPort}/_requests`);
    await waitFor(`http://localhost:${serverPort}/ready`);
  }

  /** SIGTERM to each group, then wait (10 s at most) for each to exit: agent-canvas stops
   * the static server it started in a group of its own only once it gets to run. */
  async stopAll() {
    this.stopping = true;
    await Promise.all(this.children.map((child) => stopGroup(child)));
    rmSync(this.scratch, { recursive: true, force: true });
  }
}

function stopGroup(child) {
  return new Promise((ok) => {
    if (child.exitCode !== null || child.signalCode !== null) return ok();
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
      ok();
    }, 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      ok();
    });
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      clearTimeout(timer);
      ok();
    }
  });
}

/** PUT a script on the scripted LLM: `replies` in its JSON form (see testing/_script.py). */
export async function script(llm, name, replies) {
  const answer = await fetch(`${llm}/_scripts/${name}`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(replies),
  });
  if (!answer.ok) throw new Error(`script ${name}: ${answer.status} ${await answer.text()}`);
}
