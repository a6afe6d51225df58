// Agents' Markdown, rendered and sanitized by the gateway (POST /console/markdown:
// markdown-it-py, then nh3), put into the page. This is the only place the console
// inserts HTML, and only through the Trusted Types policy "tether-markdown": the page's
// Content-Security-Policy makes the browser refuse any other string as HTML.

const policy = window.trustedTypes
  ? window.trustedTypes.createPolicy("tether-markdown", { createHTML: (html) => html })
  : { createHTML: (html) => html };

const BATCH_TEXTS = 200; // the gateway takes 500 texts and 4 MB a request
const BATCH_CHARS = 1 << 20;

/** ``items`` in batches a request can carry. */
function batches(items, textOf) {
  const out = [];
  let batch = [];
  let chars = 0;
  for (const item of items) {
    const size = textOf(item).length;
    if (batch.length && (batch.length >= BATCH_TEXTS || chars + size > BATCH_CHARS)) {
      out.push(batch);
      batch = [];
      chars = 0;
    }
    batch.push(item);
    chars += size;
  }
  if (batch.length) out.push(batch);
  return out;
}

export class Markdown {
  constructor(post) {
    this.post = post; // (texts) -> Promise<html[]>
    this.queue = [];
    this.timer = null;
    this.asked = new Map(); // text -> Promise<html>, asked for before it is shown
  }

  /** Ask for these texts now, before they are shown: ``into`` then finds them on the
   * way (a session's history asks while it is still being built). */
  warm(texts) {
    const fresh = [...new Set(texts)].filter((text) => !this.asked.has(text));
    for (const batch of batches(fresh, (text) => text)) {
      const answer = this.post(batch);
      batch.forEach((text, i) => {
        const html = answer.then((all) => all[i]);
        html.catch(() => null); // a text never shown is no unhandled failure
        this.asked.set(text, html);
      });
    }
  }

  /** Show ``text`` in ``target`` as Markdown once the gateway has rendered it (the
   * plain text stays until then, and if rendering fails). */
  into(target, text) {
    const asked = this.asked.get(text);
    if (asked) {
      this.asked.delete(text);
      asked.then(
        (html) => this.show(target, html),
        () => this.later(target, text), // asked early and failed: the usual way, once
      );
      return;
    }
    this.later(target, text);
  }

  later(target, text) {
    this.queue.push({ target, text });
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), 0);
  }

  async flush() {
    this.timer = null;
    const queued = this.queue.splice(0);
    await Promise.all(batches(queued, (item) => item.text).map(async (batch) => {
      let html;
      try {
        html = await this.post(batch.map((item) => item.text));
      } catch (err) {
        console.warn("markdown not rendered", err);
        return;
      }
      batch.forEach((item, i) => this.show(item.target, html[i]));
    }));
  }

  show(target, html) {
    if (typeof html !== "string") return;
    const doc = new DOMParser().parseFromString(policy.createHTML(html), "text/html");
    target.replaceChildren(...doc.body.childNodes);
    target.classList.add("md");
  }
}
