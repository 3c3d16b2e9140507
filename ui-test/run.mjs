// make test-ui: the official web UI (@openhands/agent-canvas, served frontend-only) driven
// by the system's Chromium against trio-openhands and the scripted LLM, as a new user would:
// connect, choose the agent, configure the LLM, start a conversation from a prompt, see the
// reply, send a second message, pause it, delete the conversation. One screenshot per step
// in build/ui/. Everything runs on loopback; requests the page makes to the internet
// (fonts, analytics, icons) are refused, so the run needs no network.
//
//   PYTHON=.venv/bin/python node ui-test/run.mjs   (the Makefile sets PYTHON)

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const python = resolve(process.env.PYTHON ?? join(root, ".venv/bin/python"));
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = join(root, "build", "ui");
const scratch = mkdtempSync(join(tmpdir(), "trio-openhands-ui-"));
const children = [];

function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

function start(name, command, args, env = {}) {
  const child = spawn(command, args, {
    cwd: scratch,
    env: { ...process.env, HOME: join(scratch, "home"), ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group: stopped as a whole at the end
  });
  const log = [];
  for (const stream of [child.stdout, child.stderr]) {
    stream.on("data", (chunk) => log.push(String(chunk)));
  }
  child.on("exit", (code) => {
    if (!stopping) console.error(`${name} exited (${code}):\n${log.join("").slice(-3000)}`);
  });
  children.push(child);
  return child;
}

async function waitFor(url, { status = 200, seconds = 120 } = {}) {
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

async function api(path, init) {
  const answer = await fetch(`${server}${path}`, init);
  if (!answer.ok) throw new Error(`${path}: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

async function until(what, check, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

let stopping = false;
let step = 0;
let page;
async function shot(name) {
  step += 1;
  const path = join(shots, `${String(step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path });
  console.log(`step ${step}: ${name} (${path})`);
}

const [serverPort, llmPort, canvasPort, staticPort] = await Promise.all(
  [0, 1, 2, 3].map(freePort),
);
const server = `http://localhost:${serverPort}`;
const llm = `http://127.0.0.1:${llmPort}`;
let browser;
let failed = false;
try {
  rmSync(shots, { recursive: true, force: true });
  mkdirSync(shots, { recursive: true });
  mkdirSync(join(scratch, "home"), { recursive: true });
  start("scripted LLM", python, ["-m", "trio_openhands.testing.fake_llm", "--port", `${llmPort}`]);
  start("trio-openhands", python, [
    "-m", "trio_openhands.cli",
    "--port", `${serverPort}`,
    "--conversations-dir", join(scratch, "conversations"),
    "--workspace-dir", join(scratch, "project"),
    "--log-level", "WARNING",
  ]);
  start("agent-canvas", process.execPath, [
    join(here, "node_modules/@openhands/agent-canvas/bin/agent-canvas.mjs"),
    "--frontend-only", "--port", `${canvasPort}`,
  ], { OH_CANVAS_SAFE_VITE_PORT: `${staticPort}` });
  await waitFor(`${llm}/_requests`);
  await waitFor(`${server}/ready`);
  await waitFor(`http://localhost:${canvasPort}/`);

  const put = (name, replies) =>
    fetch(`${llm}/_scripts/${name}`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(replies),
    });
  await put("hello", [{ text: "Hello from the scripted LLM!" }]);
  await put("held", [{ text: "this answer comes too late", delay: 60 }]);

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.route(/^https?:\/\/(?!localhost|127\.0\.0\.1)/, (route) => route.abort());

  // 1. Connect: the backend's URL (no session key on a loopback server).
  await page.goto(`http://localhost:${canvasPort}/`);
  await page.getByTestId("onboarding-backend-host").fill(server);
  await shot("connect");
  await page.getByRole("button", { name: "Next" }).click();

  // 2. The agent: OpenHands.
  await page.getByText("Choose your agent").waitFor();
  await shot("choose-agent");
  await page.getByRole("button", { name: "Next" }).click();

  // 3. The LLM: the scripted one, through the form drawn from /api/settings/agent-schema.
  await page.getByText("Set up your LLM").waitFor();
  await page.getByText("Advanced", { exact: true }).click();
  await page.getByTestId("llm-custom-model-input").fill("openai/fake");
  await page.getByTestId("base-url-input").fill(`${llm}/v1`);
  await page.getByTestId("llm-api-key-input").fill("fake-key");
  await shot("configure-llm");
  await page.getByTestId("onboarding-llm-next").click();
  await until("the LLM saved in the server's settings", async () => {
    const settings = await api("/api/settings");
    return settings.agent_settings.llm.base_url === `${llm}/v1` && settings.llm_api_key_is_set;
  });

  // 4. A conversation from a prompt, and its reply, live.
  await page.getByTestId("onboarding-hello-input").fill("Say hello [[fake:hello]]");
  await shot("prompt");
  await page.getByTestId("submit-button").click();
  await page.getByText("Hello from the scripted LLM!").waitFor({ timeout: 60_000 });
  const [conversation] = (await api("/api/conversations/search")).items;
  await until("the title from the conversation's LLM", async () =>
    (await api(`/api/conversations/${conversation.id}`)).title,
  );
  await shot("reply");

  // 5. A second message; the scripted LLM holds its answer, so the agent is running...
  await page.getByTestId("chat-input").click();
  await page.keyboard.type("Take your time [[fake:held]]");
  await page.getByTestId("submit-button").click();
  await page.getByTestId("stop-button").waitFor({ timeout: 30_000 });
  await until("the held LLM call", async () => {
    const requests = await (await fetch(`${llm}/_requests`)).json();
    return JSON.stringify(requests).includes("held");
  });
  await shot("second-message-running");

  // 6. ...until paused: the LLM call in flight is cut, the status is paused at once.
  await page.getByTestId("stop-button").click();
  await until("paused", async () =>
    (await api(`/api/conversations/${conversation.id}`)).execution_status === "paused",
  );
  await page.getByTestId("stop-button").waitFor({ state: "detached", timeout: 30_000 });
  await shot("paused");

  // 7. Delete it from the conversation's menu.
  await page.getByTestId("conversation-name").getByTestId("ellipsis-button").click();
  await shot("conversation-menu");
  await page.getByText("Delete Conversation", { exact: true }).click();
  const confirm = page.getByRole("dialog").getByRole("button", { name: /confirm|delete|yes/i });
  await confirm.first().click();
  await until("deleted", async () => (await api("/api/conversations/count")) === 0);
  await shot("deleted");

  // 8. An agent profile made active: the UI starts the next conversation with its
  //    `agent_profile_id`, and the profile's LLM answers.
  const post = async (path, body) => {
    const response = await fetch(`${server}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`POST ${path}: ${response.status} ${await response.text()}`);
    return response.json();
  };
  const coderLlm = { model: "openai/fake-coder", base_url: `${llm}/v1`, api_key: "fake-key" };
  await post("/api/profiles/coder-llm", { llm: coderLlm });
  await post("/api/agent-profiles/coder", { agent_kind: "openhands", llm_profile_ref: "coder-llm" });
  const coder = (await api("/api/agent-profiles/coder")).profile;
  await post(`/api/agent-profiles/${coder.id}/activate`);
  await put("profiled", [{ text: "The coder profile answers." }]);
  await page.goto(`http://localhost:${canvasPort}/`);
  await page.getByText("New Chat", { exact: true }).click();
  await page.getByText("Let's Start Building!").waitFor();
  await page.getByTestId("chat-input").click();
  await page.keyboard.type("Which profile? [[fake:profiled]]");
  await page.getByTestId("submit-button").click();
  await page.getByText("The coder profile answers.").waitFor({ timeout: 60_000 });
  const [launched] = (await api("/api/conversations/search")).items;
  if (launched.launched_agent_profile?.agent_profile_id !== coder.id) {
    throw new Error(`not launched from the profile: ${JSON.stringify(launched.launched_agent_profile)}`);
  }
  const calls = JSON.stringify(await (await fetch(`${llm}/_requests`)).json());
  if (!calls.includes('"fake-coder"')) throw new Error("the profile's LLM was not asked");
  await shot("agent-profile");

  // 9. Our own API documentation renders with no network.
  await page.goto(`${server}/docs`);
  await page.locator(".swagger-ui .opblock").first().waitFor({ timeout: 30_000 });
  await shot("api-docs");
  console.log(`web UI test passed: ${step} screenshots in ${shots}`);
} catch (error) {
  failed = true;
  console.error(`web UI test failed at step ${step + 1}: ${error.stack ?? error}`);
  if (page) await page.screenshot({ path: join(shots, "failure.png") }).catch(() => {});
} finally {
  stopping = true;
  if (browser) await browser.close().catch(() => {});
  // SIGTERM to each group, then wait (10 s at most) for each to exit: agent-canvas stops
  // the static server it started in a group of its own only once it gets to run.
  await Promise.all(
    children.map(
      (child) =>
        new Promise((ok) => {
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
        }),
    ),
  );
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
