// The TypeScript SDK's everyday calls against ANTHROPIC_BASE_URL, their results as one JSON object on stdout.
// Run by tests/integration/test_typescript_sdk.py (from this directory, so that node finds node_modules).
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({
  baseURL: process.env.ANTHROPIC_BASE_URL,
  apiKey: process.env.ANTHROPIC_API_KEY,
  maxRetries: 0,
});
const model = "claude-opus-5-5";
const weatherTool = {
  name: "get_weather",
  description: "Get the weather for a city",
  input_schema: {
    type: "object",
    properties: { city: { type: "string" }, days: { type: "integer", minimum: 1, maximum: 7 } },
    required: ["city", "days"],
  },
};

const created = await client.messages.create({
  model,
  max_tokens: 100,
  messages: [{ role: "user", content: "Hello from TypeScript" }],
});

const stream = client.messages.stream({
  model,
  max_tokens: 100,
  messages: [{ role: "user", content: "Streamed from TypeScript" }],
});
let streamedText = "";
stream.on("text", (text) => {
  streamedText += text;
});
const streamed = await stream.finalMessage();

const counted = await client.messages.countTokens({
  model,
  messages: [{ role: "user", content: "Count these four words" }],
});

// Claude Opus 5.5 refuses a forced tool choice; under "auto" the echo calls the tool the question names.
const weatherQuestion = { tools: [weatherTool], messages: [{ role: "user", content: "What is the weather in Paris?" }] };
let refusedForced = null;
try {
  await client.messages.create({ model, max_tokens: 200, tool_choice: { type: "any" }, ...weatherQuestion });
} catch (error) {
  refusedForced = { status: error.status, message: error.apiMessage, isBadRequest: error instanceof Anthropic.BadRequestError };
}
const called = await client.messages.create({ model, max_tokens: 200, tool_choice: { type: "auto" }, ...weatherQuestion });

// The beta client, as Claude Code calls it: ?beta=true, betas, a system message between turns.
const beta = await client.beta.messages.create({
  model,
  max_tokens: 100,
  betas: ["context-management-2025-06-27"],
  context_management: { edits: [{ type: "clear_thinking_20251015", keep: "all" }] },
  messages: [
    { role: "user", content: "Hello from the beta client" },
    { role: "system", content: "Answer briefly.", output_config: { effort: "low" } },
  ],
});

const toolUse = called.content.find((block) => block.type === "tool_use");
const textOf = (message) => message.content.find((block) => block.type === "text")?.text;
console.log(
  JSON.stringify({
    created: {
      id: created.id,
      blocks: created.content.map((block) => block.type),
      thinking: created.content[0].thinking,
      signed: Boolean(created.content[0].signature),
      text: textOf(created),
      stop_reason: created.stop_reason,
      usage: created.usage,
    },
    streamed: { text: streamedText, final_text: textOf(streamed), stop_reason: streamed.stop_reason },
    counted,
    refusedForced,
    called: { stop_reason: called.stop_reason, name: toolUse?.name, input: toolUse?.input },
    beta: { text: beta.content.find((block) => block.type === "text")?.text, stop_reason: beta.stop_reason },
  }),
);
