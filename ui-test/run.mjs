// make test-ui: the official web UI (@openhands/agent-canvas, served frontend-only) driven
// by the system's Chromium against trio-openhands and the scripted LLM, as a new user would:
// connect, choose the agent, configure the LLM, start a conversation from a prompt, see the
// reply, send a second message, pause it, delete the conversation, start the next one from
// the active agent profile. One screenshot per step in build/ui/. Everything runs on
// loopback; requests the page makes to the internet (fonts, analytics, icons) are refused,
// so the run needs no network.
//
//   PYTHON=.venv/bin/python node ui-test/run.mjs   (the Makefile sets PYTHON)

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

import { Processes, freePort, here, root, script, until, waitFor } from "./harness.mjs";

const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = join(root, "build", "ui");
const processes = new Processes();

async function api(path, init) {
  const answer = await fetch(`${server}${path}`, init);
  if (!answer.ok) throw new Error(`${path}: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

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
  await processes.startServers(serverPort, llmPort);
  processes.start("agent-canvas", process.execPath, [
    join(here, "node_modules/@openhands/agent-canvas/bin/agent-canvas.mjs"),
    "--frontend-only", "--port", `${canvasPort}`,
  ], { OH_CANVAS_SAFE_VITE_PORT: `${staticPort}` });
  await waitFor(`http://localhost:${canvasPort}/`);

  const put = (name, replies) => script(llm, name, replies);
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
  if (browser) await browser.close().catch(() => {});
  await processes.stopAll();
}
process.exit(failed ? 1 : 0);
