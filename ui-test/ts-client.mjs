// make test-ts-client: the official TypeScript client (@openhands/typescript-client, the one
// the web UI is built on) driven from Node against trio-openhands and the scripted LLM, as a
// program using it would: the workspace (a command, a file up and down, git changes), a
// conversation (start, run with the live socket, the final response, stats, a title, a
// question to the agent, a profile switch, a fork, the trajectory, a confirmation, secrets,
// navigateTo, a pause), the manager's search, count and delete; then the
// `AgentServerClient` a UI uses for what the server
// holds (server info, settings and secrets, LLM, agent and meta-profiles, skills,
// sub-agents, hooks, the LLM catalog, tools, files, the bash log, workspaces). Each step
// checks what the client returns and what the server holds. Everything runs on loopback.
//
//   PYTHON=.venv/bin/python node ui-test/ts-client.mjs   (the Makefile sets PYTHON)

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import { Processes, freePort, script, until } from "./harness.mjs";

// The client loads the `ws` package with `require()` when it finds no browser WebSocket;
// an ES module has none of its own, so it is given one, as a CommonJS program would have.
globalThis.require = createRequire(import.meta.url);
const {
  Agent,
  AlwaysConfirm,
  ConversationManager,
  NeverConfirm,
  RemoteConversation,
  RemoteWorkspace,
} = await import("@openhands/typescript-client");
const { AgentServerClient } = await import("@openhands/typescript-client/clients");

const processes = new Processes();
const [serverPort, llmPort] = await Promise.all([freePort(), freePort()]);
const server = `http://localhost:${serverPort}`;
const llm = `http://127.0.0.1:${llmPort}`;
const project = join(processes.scratch, "project");
let checks = 0;

async function step(name, body) {
  await body();
  checks += 1;
  console.log(`step ${checks}: ${name}`);
}

async function api(method, path, body) {
  const answer = await fetch(`${server}${path}`, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!answer.ok) throw new Error(`${method} ${path}: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

async function llmCalls() {
  return (await fetch(`${llm}/_requests`)).json();
}

/** A script's replies: one terminal call, then a text answer. */
const terminalThen = (command, answer) => [
  { tool_calls: [{ name: "terminal", arguments: { command } }] },
  { text: answer },
];

/** `replies` scripted, then a message the script answers, and a run. */
async function runScripted(name, replies, prompt) {
  await script(llm, name, replies);
  await conversation.sendMessage(`${prompt} [[fake:${name}]]`);
  await conversation.run();
}

const status = async (id) => (await api("GET", `/api/conversations/${id}`)).execution_status;

let failed = false;
let conversation;
try {
  mkdirSync(project, { recursive: true });
  await processes.startServers(serverPort, llmPort);
  const workspace = new RemoteWorkspace({ host: server, workingDir: project });

  await step("a command runs in the workspace", async () => {
    const result = await workspace.executeCommand("git init -q && echo hello-ts && pwd", project);
    assert.equal(result.exit_code, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split("\n"), ["hello-ts", project]);
    assert.equal(result.timeout_occurred, false);
  });

  await step("a file goes up and comes back down", async () => {
    const uploaded = await workspace.uploadText("notes from the TS client\n", `${project}/notes.txt`);
    assert.equal(uploaded.success, true, JSON.stringify(uploaded));
    assert.equal(await workspace.downloadAsText(`${project}/notes.txt`), "notes from the TS client\n");
  });

  await step("git sees the new file", async () => {
    const changes = await workspace.gitChanges(project);
    assert.deepEqual(
      changes.map((change) => [change.status, change.path.split("/").pop()]),
      [["ADDED", "notes.txt"]],
    );
  });

  const agent = new Agent({
    llm: { model: "openai/fake", base_url: `${llm}/v1`, api_key: "fake-key", num_retries: 0 },
    tools: [{ name: "terminal" }],
  });
  const events = [];
  conversation = new RemoteConversation(agent, workspace, { callback: (event) => events.push(event) });

  await step("a conversation starts, runs its tool and finishes, live on its socket", async () => {
    await conversation.start();
    await conversation.startWebSocketClient();
    await until("the socket's first frame (the full state)", () =>
      events.some((e) => e.kind === "ConversationStateUpdateEvent" && e.key === "full_state"));
    await runScripted("ts-run", [
      { tool_calls: [{ name: "terminal", arguments: { command: "echo from-the-agent" } }] },
      { tool_calls: [{ name: "finish", arguments: { message: "done from TS" } }] },
    ], "Run it");
    await until("the run's end on the socket", () =>
      events.some((e) => e.kind === "ConversationStateUpdateEvent" && e.key === "execution_status"
        && e.value === "finished"),
    );
    const observation = events.find((e) => e.kind === "ObservationEvent");
    assert.ok(JSON.stringify(observation.observation).includes("from-the-agent"));
    assert.equal(await status(conversation.id), "finished");
  });

  await step("the final response and the stats", async () => {
    assert.equal(await conversation.getAgentFinalResponse(), "done from TS");
    const stats = await conversation.conversationStats();
    assert.ok(Object.keys(stats.usage_to_metrics ?? {}).length > 0, JSON.stringify(stats));
  });

  await step("the events list reads the same events as the socket delivered", async () => {
    // The socket delivers what happens once it is open (the client asks for no replay):
    // the list's last events, in the same order, from before the user's message on.
    const persisted = (await conversation.state.events.getEvents())
      .filter((e) => e.kind !== "ConversationStateUpdateEvent");
    const delivered = events.filter((e) => e.kind !== "ConversationStateUpdateEvent");
    assert.deepEqual(
      delivered.map((e) => e.id),
      persisted.slice(-delivered.length).map((e) => e.id),
    );
    assert.ok(delivered.some((e) => e.kind === "MessageEvent" && e.source === "user"));
    assert.ok(delivered.length >= 5, `${delivered.length} events`);
    assert.equal(await conversation.state.getExecutionStatus(), "finished");
  });

  await step("a title", async () => {
    await conversation.setTitle("From the TypeScript client");
    assert.equal((await api("GET", `/api/conversations/${conversation.id}`)).title,
      "From the TypeScript client");
  });

  await step("a question to the agent, outside its history", async () => {
    await script(llm, "ts-ask", [{ text: "It echoed from-the-agent." }]);
    const before = await conversation.state.events.count();
    assert.equal(await conversation.askAgent("What did you echo? [[fake:ts-ask]]"),
      "It echoed from-the-agent.");
    assert.equal(await conversation.state.events.count(), before);
  });

  await step("a switch to a saved LLM profile: the next step asks its model", async () => {
    const coder = { model: "openai/fake-coder", base_url: `${llm}/v1`, api_key: "fake-key" };
    await api("POST", "/api/profiles/coder", { llm: coder });
    await conversation.switchProfile("coder");
    await runScripted("ts-switched", [{ text: "the coder speaks" }], "And now?");
    await until("the switched run", async () => (await status(conversation.id)) === "finished"
      && (await conversation.getAgentFinalResponse()) === "the coder speaks");
    const call = (await llmCalls()).find((c) => c.script === "ts-switched");
    assert.equal(call.model, "fake-coder");
  });

  await step("a fork, with the events so far and its own id", async () => {
    const fork = await conversation.fork({ title: "the fork" });
    assert.notEqual(fork.id, conversation.id);
    const history = async (c) => (await c.state.events.getEvents())
      .filter((e) => e.kind !== "ConversationStateUpdateEvent").map((e) => e.id);
    assert.deepEqual(await history(fork), await history(conversation));
    assert.equal((await api("GET", `/api/conversations/${fork.id}`)).title, "the fork");
  });

  await step("the trajectory downloads as a zip", async () => {
    const trajectory = await conversation.downloadTrajectory();
    const bytes = new Uint8Array(await trajectory.arrayBuffer());
    assert.deepEqual([...bytes.slice(0, 2)], [0x50, 0x4b]); // "PK"
  });

  await step("confirmation: the agent waits for an approval, then runs the action", async () => {
    // The client's own policy objects: `{"type": "always"}` on the wire (the reference: 422).
    await conversation.setConfirmationPolicy(new AlwaysConfirm());
    await runScripted("ts-confirm", terminalThen("echo approved-action", "ran it"), "Ask first");
    await until("waiting for confirmation", async () =>
      (await status(conversation.id)) === "waiting_for_confirmation");
    await conversation.sendConfirmationResponse(true);
    await until("the approved run's end", async () => (await status(conversation.id)) === "finished");
    const observations = await conversation.state.events.search({ kind: "ObservationEvent" });
    assert.ok(JSON.stringify(observations.items.at(-1)).includes("approved-action"));
    // The client's cached state learns the change from the socket's state update, which
    // may come just after the REST answer.
    await conversation.setConfirmationPolicy(new NeverConfirm());
    await until("the policy change on the socket", async () =>
      (await conversation.state.getConfirmationPolicy()).kind === "NeverConfirm");
    assert.ok(events.some((e) => e.key === "confirmation_policy"
      && e.value.kind === "NeverConfirm"));
  });

  await step("secrets given to the conversation reach the agent's commands", async () => {
    await conversation.updateSecrets({ TS_SECRET: "s3cret-value" });
    await runScripted("ts-secret", terminalThen("echo $TS_SECRET > seen.txt", "wrote it"), "Use the secret");
    await until("the secret run's end", async () =>
      (await status(conversation.id)) === "finished"
      && (await conversation.getAgentFinalResponse()) === "wrote it");
    assert.equal(await workspace.downloadAsText(`${project}/seen.txt`), "s3cret-value\n");
  });

  await step("navigateTo moves the head to an earlier event", async () => {
    const messages = await conversation.state.events.search({ kind: "MessageEvent", source: "user" });
    const first = messages.items[0];
    await conversation.navigateTo(first.id);
    assert.equal((await conversation.state.modelDump()).leaf_event_id, first.id);
  });

  await step("a pause does not wait for the LLM call in flight", async () => {
    await runScripted("ts-held", [{ text: "too late", delay: 60 }], "Take your time");
    await until("the held call", async () =>
      (await llmCalls()).some((c) => c.script === "ts-held"));
    await conversation.pause();
    await until("paused", async () => (await status(conversation.id)) === "paused", 10);
  });

  await step("the manager searches, counts and deletes", async () => {
    const manager = new ConversationManager({ host: server });
    const found = await manager.searchConversations();
    const ids = found.items.map((item) => item.id).sort();
    assert.equal(ids.length, 2);
    assert.ok(ids.includes(conversation.id));
    assert.equal(await manager.countConversations(), 2);
    await conversation.close();
    await manager.deleteConversation(conversation.id);
    assert.equal(await manager.countConversations(), 1);
    manager.close();
  });

  const client = new AgentServerClient({ host: server });

  await step("server info, alive and ready", async () => {
    const info = await client.server.getServerInfo();
    assert.match(info.version, /^\d+\.\d+\.\d+/);
    assert.equal((await client.server.getReady()).status, "ready");
  });

  await step("settings: a patch read back, a secret stored, listed and read", async () => {
    await client.settings.updateSettings({
      agent_settings_diff: { llm: { model: "openai/fake", base_url: `${llm}/v1` } },
    });
    const settings = await client.settings.getSettings();
    assert.equal(settings.agent_settings.llm.base_url, `${llm}/v1`);
    await client.settings.upsertSecret({ name: "TS_TOKEN", value: "t0ken", description: "ts" });
    const listed = await client.settings.listSecrets();
    assert.deepEqual(listed.secrets.map((s) => [s.name, s.description]), [["TS_TOKEN", "ts"]]);
    assert.equal(await client.settings.getSecret("TS_TOKEN"), "t0ken"); // the bare value
    await client.settings.deleteSecret("TS_TOKEN");
    assert.deepEqual((await client.settings.listSecrets()).secrets, []);
  });

  await step("LLM profiles: saved, listed, activated, renamed, deleted", async () => {
    const fast = { model: "openai/fake-fast", base_url: `${llm}/v1`, api_key: "fake-key" };
    await client.profiles.saveProfile("fast", { llm: fast });
    const listed = await client.profiles.listProfiles();
    assert.deepEqual(listed.profiles.map((p) => p.name).sort(), ["coder", "fast"]);
    await client.profiles.activateProfile("fast");
    assert.equal((await client.settings.getSettings()).agent_settings.llm.model, "openai/fake-fast");
    await client.profiles.renameProfile("fast", "quick");
    assert.equal((await client.profiles.getProfile("quick")).config.model, "openai/fake-fast");
    await client.profiles.deleteProfile("quick");
    assert.deepEqual((await client.profiles.listProfiles()).profiles.map((p) => p.name), ["coder"]);
  });

  await step("agent profiles: saved over an LLM profile, materialized, activated", async () => {
    await client.agentProfiles.saveAgentProfile("helper", {
      agent_kind: "openhands", llm_profile_ref: "coder",
    });
    const helper = (await client.agentProfiles.getAgentProfile("helper")).profile;
    const report = await client.agentProfiles.materializeAgentProfile("helper");
    assert.equal(report.valid, true, JSON.stringify(report.errors));
    assert.equal(report.resolved_settings.llm.model, "openai/fake-coder");
    await client.agentProfiles.activateAgentProfile(helper.id);
    const listed = await client.agentProfiles.listAgentProfiles();
    assert.equal(listed.active_agent_profile_id, helper.id);
  });

  await step("meta-profiles: saved and activated into the settings", async () => {
    await client.metaProfiles.saveMetaProfile("router", {
      classifier_model: "coder", classes: [{ description: "coding", model: "coder" }],
    });
    assert.deepEqual((await client.metaProfiles.listMetaProfiles()).meta_profiles.map((p) => p.name),
      ["router"]);
    await client.metaProfiles.activateMetaProfile("router");
    assert.equal((await client.settings.getSettings()).active_meta_profile, "router");
  });

  await step("skills, sub-agents and hooks of the project", async () => {
    mkdirSync(join(project, ".openhands", "skills"), { recursive: true });
    await workspace.uploadText("---\nname: ts-skill\ndescription: from the test\n---\nUse it.\n",
      `${project}/.openhands/skills/ts-skill.md`);
    const skills = await client.skills.getSkills({ project_dir: project, load_public: false });
    assert.ok(skills.skills.some((skill) => skill.name === "ts-skill"), JSON.stringify(skills));
    const agents = await client.subAgents.getSubAgents({ project_dir: project });
    assert.ok(agents.agents.length > 0);
    const hooks = await client.hooks.loadHooks({ project_dir: project });
    assert.equal(hooks.hook_config, null);
  });

  await step("the LLM catalog and the tools", async () => {
    assert.ok((await client.llm.getProviders()).includes("openai"));
    assert.ok((await client.llm.getModels("openai")).length > 0);
    assert.ok((await client.tools.listTools()).includes("terminal"));
  });

  await step("files: the home folder, subfolders, a file up and down", async () => {
    await client.files.uploadTextFile("through the file client\n", `${project}/sub/f.txt`);
    assert.equal(await client.files.downloadTextFile(`${project}/sub/f.txt`),
      "through the file client\n");
    const subdirs = await client.files.searchSubdirectories(project);
    assert.ok(subdirs.items.some((item) => item.name === "sub"), JSON.stringify(subdirs));
    assert.ok((await client.files.getHome()).home);
  });

  await step("the bash log: a command started, then found among the events", async () => {
    const command = await client.bash.startCommand(`echo logged-by-ts`, project);
    await until("the command's output in the log", async () => {
      const page = await client.bash.searchEvents({ command_id__eq: command.id });
      return page.items.some((e) => e.kind === "BashOutput" && (e.stdout ?? "").includes("logged-by-ts"));
    });
  });

  await step("workspaces: added, listed, deleted", async () => {
    await client.workspaces.addWorkspaces([{ id: "ts-project", path: project, name: "project" }]);
    const listed = await client.workspaces.listWorkspaces();
    assert.ok(listed.workspaces.some((w) => w.path === project), JSON.stringify(listed));
    await client.workspaces.deleteWorkspace(project);
    assert.ok(!(await client.workspaces.listWorkspaces()).workspaces.some((w) => w.path === project));
  });
  client.close();
  console.log(`TypeScript client test passed: ${checks} steps`);
} catch (error) {
  failed = true;
  console.error(`TypeScript client test failed at step ${checks + 1}: ${error.stack ?? error}`);
} finally {
  await conversation?.close().catch(() => {});
  await processes.stopAll();
}
process.exit(failed ? 1 : 0);
