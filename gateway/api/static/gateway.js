// The data gateway's browser module: company identity for pages of other sites, in every browser,
// without third-party cookies (docs/browsers.md).
//
//   import { connect } from "https://gateway.example/v1/sdk/gateway.js";
//   button.onclick = async () => {             // a click: browsers open popups for user gestures only
//     const connection = await connect({ gateway: "https://gateway.example", datasets: ["driving"] });
//     image.src = connection.url("driving", "images/0001.jpg");           // <img>, canvases, WebGL
//     const cloud = await connection.fetch("driving", "clouds/0001.pcd", { headers: { Range: "bytes=0-1023" } });
//   };
//
// connect() opens the gateway's connect page in a popup (signing in there first if needed); the page
// hands this page, and only this page's origin, a capability: a short-lived credential bound to the
// signed-in employee, this site, this address and the datasets asked for. It travels in the URL's path,
// so every loader carries it, relative URLs inside multi-file assets (a .gltf's .bin) included. The
// connection renews it before it expires while the employee's gateway session lasts, without a popup.
// These names are public interface: connect, Connection.url, Connection.fetch, Connection.close.

const CAPABILITY_MESSAGE = "gateway-capability";
const SHARE_MESSAGE = "gateway-capability-share";
const ASK_MESSAGE = "gateway-capability-ask";

function gatewayOrigin(gateway) {
  const url = new URL(gateway);
  if (url.protocol !== "https:" && url.hostname !== "localhost" && url.hostname !== "127.0.0.1") {
    throw new Error("the gateway must be an https:// URL");
  }
  return url.origin;
}

function encodeKey(key) {
  return String(key).split("/").map(encodeURIComponent).join("/");
}

function capabilityUrl(gateway, capability, dataset, key) {
  return `${gateway}/v1/c/${capability}/datasets/${encodeURIComponent(dataset)}/objects/${encodeKey(key)}`;
}

/** Open the gateway's connect page (call it from a user gesture) and resolve to a Connection. */
export function connect({ gateway, datasets, prefixes = [], timeout = 300000 } = {}) {
  const origin = gatewayOrigin(gateway);
  if (!Array.isArray(datasets) || datasets.length === 0) {
    return Promise.reject(new Error("name the datasets the page will read: connect({gateway, datasets: [...]})"));
  }
  const page = new URL(origin + "/v1/auth/connect");
  page.searchParams.set("origin", window.location.origin);
  page.searchParams.set("datasets", datasets.join(","));
  if (prefixes.length) page.searchParams.set("prefixes", prefixes.join(","));
  const popup = window.open(page.toString(), "gateway-connect", "popup,width=520,height=680");
  if (!popup) {
    return Promise.reject(new Error("the browser blocked the gateway's popup: call connect() from a click"));
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { done(); reject(new Error("the gateway did not connect in time")); }, timeout);
    function onMessage(event) {
      // Only the gateway's own page, and only its capability message.
      if (event.origin !== origin || event.source !== popup) return;
      const data = event.data;
      if (!data || data.type !== CAPABILITY_MESSAGE || typeof data.capability !== "string") return;
      done();
      resolve(new Connection(origin, data));
    }
    function done() {
      clearTimeout(timer);
      window.removeEventListener("message", onMessage);
    }
    window.addEventListener("message", onMessage);
  });
}

export class Connection {
  constructor(gateway, message) {
    this.gateway = gateway;
    this.capability = message.capability;
    this.expiresAt = message.expires_at;  // Unix seconds
    this.datasets = message.datasets || [];
    this._timer = null;
    this._workers = new Set();
    this._answering = null;
    this._schedule();
  }

  /** The URL of an object, carrying the capability: for <img>, canvases, fetch, loaders. */
  url(dataset, key) {
    this._open();
    return capabilityUrl(this.gateway, this.capability, dataset, key);
  }

  /** fetch() an object (init as for fetch: Range, signal, ...); the capability is in the URL. */
  fetch(dataset, key, init = {}) {
    return fetch(this.url(dataset, key), { ...init, credentials: "omit", mode: "cors" });
  }

  /** A fresh capability while the gateway session lasts (done by itself before expiry). */
  async renew() {
    this._open();
    const response = await fetch(`${this.gateway}/v1/c/${this.capability}/renew`,
      { method: "POST", credentials: "omit", mode: "cors" });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(`the gateway did not renew the capability: ${body.error || response.status}`);
    }
    const body = await response.json();
    this.capability = body.capability;
    this.expiresAt = body.expires_at;
    this._schedule();
    await Promise.all([...this._workers].map((worker) => this._share(worker).catch(() => {})));
    return this;
  }

  /**
   * Hand the capability (and its renewals) to a service worker running gatewayServiceWorker().
   * Resolves once the worker has it; a worker that the browser stopped and restarted asks this page
   * again by itself, so the page keeps the one copy that counts.
   */
  shareWith(worker) {
    this._open();
    this._workers.add(worker);
    if (!this._answering && typeof navigator !== "undefined" && navigator.serviceWorker) {
      this._answering = (event) => {
        const data = event.data;
        if (data && data.type === ASK_MESSAGE && data.gateway === this.gateway && event.ports[0]) {
          event.ports[0].postMessage({ type: SHARE_MESSAGE, gateway: this.gateway, capability: this.capability });
        }
      };
      navigator.serviceWorker.addEventListener("message", this._answering);
    }
    return this._share(worker);
  }

  /** Stop renewing and forget the capability (it still expires on its own at the gateway). */
  close() {
    clearTimeout(this._timer);
    this.capability = null;
    for (const worker of this._workers) this._share(worker).catch(() => {});
    this._workers.clear();
    if (this._answering) navigator.serviceWorker.removeEventListener("message", this._answering);
    this._answering = null;
  }

  _open() {
    if (!this.capability) throw new Error("this gateway connection is closed; connect() again");
  }

  _share(worker) {
    return new Promise((resolve, reject) => {
      const channel = new MessageChannel();
      const timer = setTimeout(() => reject(new Error("the service worker did not take the capability")), 5000);
      channel.port1.onmessage = () => { clearTimeout(timer); resolve(); };
      worker.postMessage({ type: SHARE_MESSAGE, gateway: this.gateway, capability: this.capability }, [channel.port2]);
    });
  }

  _schedule() {
    clearTimeout(this._timer);
    const left = this.expiresAt * 1000 - Date.now();
    // At two thirds of its life; a failure (signed out) leaves the capability to expire.
    this._timer = setTimeout(() => this.renew().catch(() => {}), Math.max(1000, left * 2 / 3));
  }
}

/**
 * For a service worker: rewrite the page's plain gateway URLs (/v1/datasets/...) to carry the
 * capability, so loaders need no change. In the worker (a module worker):
 *
 *   import { gatewayServiceWorker } from "https://gateway.example/v1/sdk/gateway.js";
 *   gatewayServiceWorker({ gateway: "https://gateway.example" });           // or { ..., header: true }
 *
 * and in the page: await connection.shareWith(navigator.serviceWorker.controller).
 * header: true sends "Authorization: Bearer <capability>" instead of changing the URL (a preflight).
 * Browsers stop idle workers; a restarted one asks the page that made the request for the capability.
 */
export function gatewayServiceWorker({ gateway, header = false, scope = self } = {}) {
  const origin = gatewayOrigin(gateway);
  let capability = null;
  let missed = 0;  // when a page last had nothing to give: do not make every request wait for it
  scope.addEventListener("message", (event) => {
    const data = event.data;
    if (data && data.type === SHARE_MESSAGE && data.gateway === origin) {
      capability = data.capability;
      if (event.ports[0]) event.ports[0].postMessage({ type: SHARE_MESSAGE, taken: true });
    }
  });
  function ask(clientId) {
    return scope.clients.get(clientId).then((client) => new Promise((resolve) => {
      if (!client) return resolve(null);
      const channel = new MessageChannel();
      const timer = setTimeout(() => resolve(null), 2000);
      channel.port1.onmessage = (event) => { clearTimeout(timer); resolve(event.data && event.data.capability); };
      client.postMessage({ type: ASK_MESSAGE, gateway: origin }, [channel.port2]);
    }));
  }
  async function respond(request, url, clientId) {
    if (!capability && clientId && Date.now() - missed > 10000) {
      capability = await ask(clientId);
      if (!capability) missed = Date.now();
    }
    if (!capability) return fetch(request);  // not connected: the gateway answers 401 as to any loader
    const init = { method: request.method, mode: "cors", credentials: "omit",
                   headers: new Headers(request.headers), signal: request.signal };
    if (header) {
      init.headers.set("Authorization", `Bearer ${capability}`);
      return fetch(url.toString(), init);
    }
    return fetch(`${origin}/v1/c/${capability}${url.pathname.slice(3)}${url.search}`, init);
  }
  scope.addEventListener("fetch", (event) => {
    const url = new URL(event.request.url);
    if (url.origin !== origin || !url.pathname.startsWith("/v1/datasets/")) return;
    event.respondWith(respond(event.request, url, event.clientId));
  });
}
