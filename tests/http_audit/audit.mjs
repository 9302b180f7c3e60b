// The GraphQL-over-HTTP spec's audit (graphql-http's auditServer) against one server.
// Usage: node audit.mjs <graphql url> [api key]
// Prints one JSON array: [{id, name, status, reason?}], status "ok" | "notice" | "warn" | "error".
import { auditServer } from 'graphql-http';

const [url, key] = process.argv.slice(2);
if (!url) {
  console.error('usage: node audit.mjs <graphql url> [api key]');
  process.exit(2);
}

// Every audit request carries the key: the server refuses keyless requests before reading them.
async function fetchWithKey(input, init = {}) {
  const headers = new Headers(init.headers);
  if (key) headers.set('authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url, fetchFn: fetchWithKey });
const report = [];
for (const result of results) {
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    entry.responseStatus = result.response.status;
    entry.responseBody = await result.response.text().catch(() => '(unreadable)');
  }
  report.push(entry);
}
console.log(JSON.stringify(report, null, 2));
