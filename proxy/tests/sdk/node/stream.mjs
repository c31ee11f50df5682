// The official OpenAI Node SDK streaming chat through sluice, for the ignored
// `node_openai_stream` test in proxy/tests/sdk.rs (not part of CI).
//
// Setup, once:  mkdir -p target/sdk-node && npm install --prefix target/sdk-node openai
// Run:          SLUICE_SDK_NODE_DIR=$PWD/target/sdk-node \
//                 cargo test --release -p sluice-proxy --test sdk -- --ignored node_openai_stream
//
// Env: SLUICE_BASE_URL (http://ADDR), SLUICE_KEY, SLUICE_SDK_NODE_DIR (where `openai` is
// installed; resolved from there because this script lives outside that tree). Prints one
// JSON line: the text and usage the SDK saw, for a stream without and with include_usage.

import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(join(process.env.SLUICE_SDK_NODE_DIR, "package.json"));
const mod = await import(pathToFileURL(require.resolve("openai")).href);
const OpenAI = mod.OpenAI ?? mod.default;

const client = new OpenAI({
  baseURL: `${process.env.SLUICE_BASE_URL}/v1`,
  apiKey: process.env.SLUICE_KEY,
  maxRetries: 0,
  timeout: 20_000,
});
const messages = [{ role: "user", content: "one two three four" }];

async function run(includeUsage) {
  const stream = await client.chat.completions.create({
    model: "mock-gpt",
    messages,
    stream: true,
    ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
  });
  let text = "";
  let usage = null;
  let usageChunks = 0;
  for await (const chunk of stream) {
    if (chunk.usage) {
      usageChunks += 1;
      usage = { input: chunk.usage.prompt_tokens, output: chunk.usage.completion_tokens };
    }
    for (const c of chunk.choices) text += c.delta?.content ?? "";
  }
  return { text, usage, usage_chunks: usageChunks };
}

const timer = setTimeout(() => {
  console.error("node SDK case timed out");
  process.exit(2);
}, 60_000);
const out = { plain: await run(false), with_usage: await run(true) };
clearTimeout(timer);
console.log(JSON.stringify(out));
