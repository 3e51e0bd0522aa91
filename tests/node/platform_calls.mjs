// Every door the TypeScript clients know, against UNDERSTUDY_BASE_URL, their results as one JSON object on stdout:
// the platform packages (@anthropic-ai/bedrock-sdk, vertex-sdk, foundry-sdk, aws-sdk, google-cloud-sdk) and the
// openai SDK through the OpenAI-compatible endpoint. Run by tests/integration/test_doors_typescript.py.
import { AnthropicAws } from "@anthropic-ai/aws-sdk";
import { AnthropicBedrock, AnthropicBedrockMantle } from "@anthropic-ai/bedrock-sdk";
import { AnthropicFoundry } from "@anthropic-ai/foundry-sdk";
import { AnthropicGoogleCloud } from "@anthropic-ai/google-cloud-sdk";
import { AnthropicVertex } from "@anthropic-ai/vertex-sdk";
import OpenAI from "openai";

const base = process.env.UNDERSTUDY_BASE_URL;
const key = process.env.UNDERSTUDY_API_KEY;
const aws = { awsRegion: "us-east-1", maxRetries: 0 };
// A stand-in for google-auth-library's client: the Vertex client asks it for headers and a project.
const authClient = { projectId: "p", getRequestHeaders: async () => new Headers({ Authorization: `Bearer ${key}` }) };

const doors = {
  "bedrock (SigV4)": [new AnthropicBedrock({ ...aws, awsAccessKey: key, awsSecretKey: "secret", baseURL: base }), "us.anthropic.claude-haiku-4-5-20251001-v1:0"],
  "bedrock (API key)": [new AnthropicBedrock({ ...aws, apiKey: key, baseURL: base }), "anthropic.claude-haiku-4-5-20251001-v1:0"],
  mantle: [new AnthropicBedrockMantle({ ...aws, apiKey: key, baseURL: `${base}/anthropic` }), "anthropic.claude-haiku-4-5"],
  vertex: [new AnthropicVertex({ region: "us-east5", projectId: "p", authClient, baseURL: `${base}/v1`, maxRetries: 0 }), "claude-haiku-4-5@20251001"],
  foundry: [new AnthropicFoundry({ apiKey: key, baseURL: `${base}/anthropic/`, maxRetries: 0 }), "claude-haiku-4-5"],
  aws: [new AnthropicAws({ ...aws, apiKey: key, workspaceId: "wrkspc_1", baseURL: base }), "claude-haiku-4-5"],
  "google-cloud": [new AnthropicGoogleCloud({ baseURL: `${base}/v1/projects/p/locations/global/workspaces/w/invoke`, bearerTokenProvider: async () => key, maxRetries: 0 }), "claude-haiku-4-5"],
};
const weatherTool = {
  name: "get_weather",
  description: "Get the weather for a city",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

const results = {};
for (const [name, [client, model]] of Object.entries(doors)) {
  const ask = (content, fields = {}) => client.messages.create({ model, max_tokens: 64, messages: [{ role: "user", content }], ...fields });
  const created = await ask(`Hello from ${name}`);
  const stream = client.messages.stream({ model, max_tokens: 64, messages: [{ role: "user", content: "streamed words" }] });
  let streamed = "";
  stream.on("text", (text) => {
    streamed += text;
  });
  const final = await stream.finalMessage();
  const called = await ask("Weather in Paris?", { tools: [weatherTool], tool_choice: { type: "tool", name: "get_weather" } });
  let refused = null;
  try {
    await client.messages.create({ model, max_tokens: 64, messages: [] });
  } catch (error) {
    refused = { status: error.status, class: error.constructor.name };
  }
  results[name] = {
    text: created.content[0].text,
    model: created.model,
    streamed,
    finalStop: final.stop_reason,
    tool: called.content.at(-1).name,
    toolStop: called.stop_reason,
    refused,
  };
}

const openai = new OpenAI({ apiKey: key, baseURL: `${base}/v1/`, maxRetries: 0 });
const completion = await openai.chat.completions.create({
  model: "claude-haiku-4-5",
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello from openai" }],
});
let chunks = "";
let usage = null;
const chunkStream = await openai.chat.completions.create({
  model: "claude-haiku-4-5",
  messages: [{ role: "user", content: "chunked words" }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of chunkStream) {
  chunks += chunk.choices[0]?.delta?.content ?? "";
  usage = chunk.usage ?? usage;
}
const toolCall = await openai.chat.completions.create({
  model: "claude-haiku-4-5",
  messages: [{ role: "user", content: "Weather in Paris?" }],
  tools: [{ type: "function", function: { name: "get_weather", parameters: weatherTool.input_schema } }],
  tool_choice: "required",
});
let openaiRefused = null;
try {
  await openai.chat.completions.create({ model: "claude-haiku-4-5", messages: [{ role: "user", content: "hi" }], n: 3 });
} catch (error) {
  openaiRefused = { status: error.status, class: error.constructor.name, message: error.error?.message };
}
results.openai = {
  text: completion.choices[0].message.content,
  finish: completion.choices[0].finish_reason,
  chunks,
  usage,
  toolCall: toolCall.choices[0].message.tool_calls[0].function.name,
  toolFinish: toolCall.choices[0].finish_reason,
  refused: openaiRefused,
};
console.log(JSON.stringify(results));
