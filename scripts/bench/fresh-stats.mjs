// /stats read after the metrics listener's reuse window (src/http/metrics.ts shared(): requests within
// 250 ms of a document's start get that document): a reading right after an event (a worker killed, a
// restart) must not be the document made just before it.
const REUSE_MS = 250;
const lastAsked = new Map();

export async function freshStats(url, init = {}) {
  const wait = (lastAsked.get(url) ?? 0) + REUSE_MS + 50 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  lastAsked.set(url, Date.now());
  return fetch(url, init);
}
