// Gallery strip: the Explorer's image set, one page of pictures with labels and predictions.
// A click (or Enter) on a picture picks it; ◀ ▶ and the ← → keys step through the whole set,
// turning pages. In an exported snapshot nothing needs a kernel here, so the strip is disabled.
import { h, mirrorState } from "./lib/dom.js";
import { isSnapshot } from "./lib/snapshot.js";

const NEEDS_KERNEL = "needs a running kernel: this page is a snapshot";

function render({ model, el }) {
  const snapshot = isSnapshot();
  const root = h("div", { class: "clrp-gallery-strip", role: "group", tabindex: 0 });
  const prev = h("button", { class: "clrp-gallery-step", "aria-label": "previous image" }, "◀");
  const position = h("span", { class: "clrp-gallery-position", "aria-live": "polite" });
  const next = h("button", { class: "clrp-gallery-step", "aria-label": "next image" }, "▶");
  const hint = h("span", { class: "clrp-gallery-hint" }, "← → keys step through the set");
  const items = h("div", { class: "clrp-gallery-items" });
  root.append(h("div", { class: "clrp-gallery-nav" }, null), items);
  root.firstChild.append(prev, position, next, hint);
  el.appendChild(root);

  const send = (msg) => {
    if (!snapshot) model.send(msg);
  };
  prev.addEventListener("click", () => send({ event: "step", step: -1 }));
  next.addEventListener("click", () => send({ event: "step", step: 1 }));
  root.addEventListener("keydown", (e) => {
    const step = { ArrowLeft: -1, ArrowRight: 1 }[e.key];
    if (step === undefined || snapshot) return;
    e.preventDefault();
    send({ event: "step", step });
  });

  function draw() {
    const pictures = model.get("pictures") || [];
    const captions = model.get("captions") || [];
    const indices = model.get("indices") || [];
    const selected = model.get("selected");
    const total = model.get("total");
    root.hidden = total < 2;
    root.setAttribute("aria-label", `image set of ${total} images; ← → keys step through it`);
    position.textContent = `image ${selected + 1} of ${total}`;
    items.replaceChildren();
    indices.forEach((index, i) => {
      const on = index === selected;
      const item = h("button", {
        class: on ? "clrp-gallery-item clrp-selected" : "clrp-gallery-item",
        "data-index": index,
        "aria-pressed": on ? "true" : "false",
        "aria-label": `explain image ${captions[i] || index + 1}`,
        title: captions[i] || "",
        tabindex: -1,
      });
      item.append(h("img", { src: pictures[i] || "", alt: "" }), h("span", {}, captions[i] || ""));
      item.addEventListener("click", () => send({ event: "pick", index }));
      items.append(item);
    });
    for (const b of [prev, next, ...items.children]) {
      b.disabled = snapshot;
      if (snapshot) b.title = NEEDS_KERNEL;
    }
    mirrorState(root, { selected, total, page: indices });
  }

  model.on("change:pictures change:captions change:indices change:selected change:total", draw);
  draw();
}

export default { render };
