// Drives a registrar tenant with Baasic's official JavaScript SDK (baasic-sdk-javascript
// 2.0.12), the way a Node app with a fetch-based HTTP client would.
//
//   node flow.mjs BASE_URL API_KEY   (BASE_URL like http://127.0.0.1:8080)
//
// Reads one step per line on stdin, as JSON: {"step": "login", "username": ..., ...}.
// Answers one JSON line per step on stdout:
//   {"step", "status", "body", "token", "requests", "errors"}
// status/body: what the SDK's promise settled with (null status: it threw);
// token: what the SDK now holds in its storage (null when it holds none);
// requests: what the SDK sent for this step (method, url, headers, body);
// errors: what threw instead of answering (the SDK's code, fetch, an unknown step).
// The SDK object lives across steps, so its token does too, as in an app.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
// The bundle names `window` when it loads and expects the reflect-metadata polyfill.
globalThis.window = globalThis;
require("reflect-metadata");
const { BaasicApp } = require("baasic-sdk-javascript");

const [baseUrl, apiKey] = process.argv.slice(2);
if (!baseUrl || !apiKey) {
  console.error("usage: node flow.mjs BASE_URL API_KEY < steps.jsonl");
  process.exit(2);
}

let requests = [];
let errors = [];
// The SDK chains handlers on its promises that it never returns; if one throws, we
// want to see it in the answer, not have Node end the process.
process.on("unhandledRejection", (error) => errors.push(String(error?.stack ?? error)));

function isJson(contentType) {
  return /[/+]json\b/i.test(contentType ?? "");
}

// The SDK's IHttpClient over fetch: same contract as its jQuery client (resolve on 2xx,
// reject otherwise, both with {request, statusText, statusCode, headers, data}; a JSON
// request body is stringified, any other body, like the login form, is sent as is).
const fetchHttpClient = {
  async request(request) {
    const headers = { ...request.headers };
    let body;
    if (request.data !== undefined && request.data !== null) {
      const contentType = Object.entries(headers).find(
        ([name]) => name.toLowerCase() === "content-type",
      )?.[1];
      body = isJson(contentType) ? JSON.stringify(request.data) : request.data;
    }
    requests.push({ method: request.method, url: String(request.url), headers, body });
    const response = await fetch(request.url, { method: request.method, headers, body });
    const text = await response.text();
    const responseHeaders = Object.fromEntries(response.headers);
    let data = text === "" ? undefined : text;
    if (data !== undefined && isJson(responseHeaders["content-type"])) {
      data = JSON.parse(text);
    }
    const answer = {
      request,
      statusText: response.statusText,
      statusCode: response.status,
      headers: responseHeaders,
      data,
    };
    if (!response.ok) throw answer;
    return answer;
  },
  createPromise(deferFn) {
    return new Promise(deferFn);
  },
};

const memory = new Map();
const memoryStorage = {
  get: (key) => (memory.has(key) ? memory.get(key) : null),
  set: (key, value) => memory.set(key, value),
  remove: (key) => memory.delete(key),
  clear: () => memory.clear(),
};

const quietEvents = { pushMessage() {}, triggerEvent() {}, addEvent() {} };

const { protocol, host } = new URL(baseUrl);
const app = new BaasicApp(apiKey, {
  useSSL: protocol === "https:",
  apiRootUrl: host,
  apiVersion: "", // registrar serves {root}/{apiKey}/..., without Baasic's "v1" segment
  httpClient: () => fetchHttpClient,
  storageHandler: () => memoryStorage,
  eventHandler: () => quietEvents,
});
const membership = app.membershipModule;

function heldToken() {
  return app.getAccessToken()?.token ?? null;
}

const steps = {
  register: (args) => membership.register.create(args),
  activate: ({ activationToken }) => membership.register.activate({ activationToken }),
  login: ({ username, password, options }) =>
    membership.login.login({ username, password, options }),
  loadUserData: () => membership.login.loadUserData(),
  // The app SDK's LoginClient has no refresh (only BaasicPlatform's dashboard client does,
  // and it puts the token in headers). This is the call the Baasic API documents, made
  // through the SDK's own ApiClient, and the answer stored as the SDK stores a login.
  refresh: async () => {
    const { token, type } = app.getAccessToken();
    const answer = await app.apiClient.put(membership.login.routeDefinition.login({}), {
      token,
      type,
    });
    app.updateAccessToken(answer.data);
    return answer;
  },
  logout: () => {
    const { token, type } = app.getAccessToken();
    return membership.login.logout(token, type);
  },
  requestReset: (args) => membership.passwordRecovery.requestReset(args),
  reset: (args) => membership.passwordRecovery.reset(args),
  changePassword: ({ userName, ...passwords }) =>
    membership.user.changePassword(userName, passwords),
};

async function run({ step, ...args }) {
  requests = [];
  errors = [];
  let status = null;
  let body = null;
  try {
    if (!Object.hasOwn(steps, step)) {
      throw new Error(`unknown step ${step}; known: ${Object.keys(steps).join(", ")}`);
    }
    const answer = await steps[step](args);
    status = answer.statusCode;
    body = answer.data ?? null;
  } catch (failure) {
    if (failure && typeof failure.statusCode === "number") {
      status = failure.statusCode;
      body = failure.data ?? null;
    } else {
      errors.push(String(failure?.stack ?? failure));
    }
  }
  // let the SDK's own handlers on the same promise (token store/discard) run first
  await new Promise((resolve) => setImmediate(resolve));
  return { step, status, body, token: heldToken(), requests, errors };
}

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "") continue;
  process.stdout.write(`${JSON.stringify(await run(JSON.parse(line)))}\n`);
}
// The SDK keeps a timer to forget an expiring token; it must not keep Node alive.
process.exit(0);
