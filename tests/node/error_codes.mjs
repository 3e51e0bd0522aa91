// The TypeScript SDK's error classes for the error codes a script sends (details.error_code), as JSON on stdout.
// Run by tests/integration/test_typescript_sdk.py against a scripted server whose replies are those errors, in order.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({
  baseURL: process.env.ANTHROPIC_BASE_URL,
  apiKey: process.env.ANTHROPIC_API_KEY,
  maxRetries: 0,
});
const raised = [];
for (let call = 0; call < 2; call += 1) {
  try {
    await client.messages.create({ model: "claude-opus-5-5", max_tokens: 10, messages: [{ role: "user", content: "Hi" }] });
    raised.push(null);
  } catch (error) {
    raised.push({
      status: error.status,
      errorCode: error.errorCode,
      organizationUrlFetchDisabled: error instanceof Anthropic.OrganizationURLFetchDisabledError,
      storageNotReady: error instanceof Anthropic.StorageNotReadyError,
    });
  }
}
console.log(JSON.stringify(raised));
