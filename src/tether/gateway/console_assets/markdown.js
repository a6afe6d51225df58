// Agents' Markdown, rendered and sanitized by the gateway (POST /console/markdown:
// markdown-it-py, then nh3), put into the page. This is the only place the console
// inserts HTML, and only through the Trusted Types policy "tether-markdown": the page's
// Content-Security-Policy makes the browser refuse any other string as HTML.

const policy = window.trustedTypes
  ? window.trustedTypes.createPolicy("tether-markdown", { createHTML: (html) => html })
  : { createHTML: (html) => html };

export class Markdown {
  constructor(post) {
    this.post = post; // (texts) -> Promise<html[]>
    this.queue = [];
    this.timer = null;
  }

  /** Show ``text`` in ``target`` as Markdown once the gateway has rendered it (the
   * plain text stays until then, and if rendering fails). */
  into(target, text) {
    this.queue.push({ target, text });
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), 0);
  }

  async flush() {
    this.timer = null;
    const batch = this.queue.splice(0, 200);
    if (this.queue.length) this.timer = setTimeout(() => this.flush(), 0);
    if (!batch.length) return;
    let html;
    try {
      html = await this.post(batch.map((item) => item.text));
    } catch (err) {
      console.warn("markdown not rendered", err);
      return;
    }
    batch.forEach((item, i) => {
      if (typeof html[i] !== "string") return;
      const doc = new DOMParser().parseFromString(policy.createHTML(html[i]), "text/html");
      item.target.replaceChildren(...doc.body.childNodes);
      item.target.classList.add("md");
    });
  }
}
