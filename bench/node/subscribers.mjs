// Segment-membership subscribers for the serving benchmark (bench/subscribers.py runs this), with the
// reference graphql-ws client over the graphql-transport-ws protocol.
//
//   node subscribers.mjs URL SUBSCRIBERS QUERY_JSON OUT_FILE MAX_SECONDS [WAVE]
//
// Opens SUBSCRIBERS clients in waves of WAVE (default 50; 0: all at once, none waiting for another),
// each subscribing to the document in QUERY_JSON ({query, variables}, or {query, variablesList}: client
// i subscribes with variablesList[i], and when those name a `profileId`, a change of any other profile
// it receives is counted as a stray); prints "READY <acknowledged>" once every client is acknowledged
// or refused/closed. Each change received is timed against its own `at` (same machine, same clock).
// "heard" on stdin prints "HEARD <deliveries so far>". On "stop" on stdin, SIGTERM, or after
// MAX_SECONDS, writes the summary to OUT_FILE as JSON and exits.
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, countText, queryFile, outFile, maxSecondsText, waveText] = process.argv.slice(2);
const count = Number(countText);
const request = JSON.parse(readFileSync(queryFile, "utf8"));
const wave = waveText === undefined ? 50 : Number(waveText) || count;
const variablesOf = (index) => (request.variablesList ? request.variablesList[index] : request.variables);

const perEvent = new Map(); // event id -> [heard, heardWithin1s, maxLatencyMs, at]
const latencies = []; // ms, one per delivery
const heardBy = new Array(count).fill(0);
const closes = new Map(); // "code reason" -> how many
const errors = new Map();
let strays = 0; // changes of another profile than the one the client asked for
let delivered = 0;
const clients = [];
let acknowledged = 0;
let finished = false;

const now = () => performance.timeOrigin + performance.now();
const bump = (map, key) => map.set(key, (map.get(key) || 0) + 1);

function receive(index, payload) {
  const change = payload?.data?.segmentMembershipChanged;
  if (!change) {
    bump(errors, `payload without data: ${JSON.stringify(payload).slice(0, 200)}`);
    return;
  }
  const latency = now() - Date.parse(change.at);
  latencies.push(Math.round(latency * 10) / 10);
  heardBy[index] += 1;
  delivered += 1;
  const own = variablesOf(index)?.profileId;
  if (own !== undefined && own !== null && change.profileId !== own) strays += 1;
  const seen = perEvent.get(change.id) || [0, 0, 0, change.at];
  seen[0] += 1;
  if (latency <= 1000) seen[1] += 1;
  seen[2] = Math.max(seen[2], latency);
  perEvent.set(change.id, seen);
}

function open(index) {
  return new Promise((resolve) => {
    let settled = false;
    const settle = () => {
      if (!settled) {
        settled = true;
        resolve();
      }
    };
    const client = createClient({
      url,
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: 0, // a dropped subscriber is reported, not silently replaced
      on: {
        connected: () => {
          acknowledged += 1;
          settle();
        },
        closed: (event) => {
          if (!finished) bump(closes, `${event?.code} ${event?.reason || ""}`.trim());
          settle();
        },
        error: (error) => {
          bump(errors, String(error?.message || error?.type || error));
          settle();
        },
      },
    });
    clients.push(client);
    client.subscribe({ query: request.query, variables: variablesOf(index) }, {
      next: (payload) => receive(index, payload),
      error: (error) => bump(errors, `subscription: ${JSON.stringify(error).slice(0, 200)}`),
      complete: () => {
        if (!finished) bump(closes, "subscription completed by the server");
      },
    });
  });
}

async function main() {
  for (let start = 0; start < count; start += wave) {
    const opening = [];
    for (let i = start; i < Math.min(count, start + wave); i++) opening.push(open(i));
    await Promise.all(opening);
  }
  process.stdout.write(`READY ${acknowledged}\n`);
}

function finish() {
  if (finished) return;
  finished = true;
  const summary = {
    subscribers: count,
    acknowledged,
    strays,
    heardBy,
    latencies,
    perEvent: Object.fromEntries(perEvent),
    closes: Object.fromEntries(closes),
    errors: Object.fromEntries(errors),
  };
  writeFileSync(outFile, JSON.stringify(summary));
  for (const client of clients) client.dispose();
  process.exit(0);
}

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "stop") finish();
  else if (line.trim() === "heard") process.stdout.write(`HEARD ${delivered}\n`);
});
process.on("SIGTERM", finish);
setTimeout(finish, Number(maxSecondsText) * 1000).unref();
main().catch((error) => {
  bump(errors, `startup: ${error}`);
  process.stdout.write(`READY ${acknowledged}\n`);
});
