// Snapshot mode in the page: the banner, kernel-only controls disabled, and local channel picks.
import { h, toUint8 } from "./dom.js";
import { dequantise, inflate, toggleChannel } from "./snapshot.js";

export const NEEDS_KERNEL = "needs a running kernel: this page is a snapshot";
export const PICK = "clrp-snapshot-pick"; // detail: {channel} (thumbnail) or {bar: index}
export const PICKED = "clrp-snapshot-picked"; // detail: {channels}

/** The Explorer an element belongs to (null outside one). */
export function explorerOf(node) {
  return node && node.closest ? node.closest(".clrp-explorer") : null;
}

export function snapshotBanner() {
  return h(
    "div",
    { class: "clrp-snapshot-banner", role: "note" },
    "Snapshot: this page was saved from a notebook and has no kernel. Neuron bars and thumbnails " +
      "still show the maps embedded for the shown layer and target; other controls need the " +
      "notebook running.",
  );
}

const OFFLINE_OK = ".clrp-toolbar, .clrp-thumbs, .clrp-under";

function disableIn(explorer) {
  for (const c of explorer.querySelectorAll("select, input, textarea, button")) {
    if (c.closest(OFFLINE_OK) && !c.classList.contains("clrp-netcdf")) continue;
    if (c.dataset.clrpKernel === "off") continue;
    c.disabled = true;
    c.title = NEEDS_KERNEL;
    c.dataset.clrpKernel = "off";
  }
  for (const part of explorer.querySelectorAll(".clrp-top5")) {
    part.classList.add("clrp-needs-kernel");
    part.title = NEEDS_KERNEL;
  }
}

/**
 * Disable the controls of `el`'s Explorer that need a kernel (now and as they render), and catch
 * clicks on bqplot bars: top-5 clicks are swallowed, neuron-bar clicks become PICK events.
 * (bqplot would otherwise try to sync its selection and throw "no comm channel".)
 */
export function disableKernelControls(el, banner) {
  const onClick = (e) => {
    const explorer = explorerOf(e.target);
    if (!explorer || explorer !== explorerOf(el)) return;
    if (e.target.closest(".clrp-top5")) {
      e.stopPropagation();
      e.preventDefault();
      return;
    }
    const bars = e.target.closest(".clrp-neuron-bars");
    const group = e.target.closest(".bargroup");
    if (bars && group) {
      e.stopPropagation();
      const index = [...bars.querySelectorAll(".bargroup")].indexOf(group);
      group.dispatchEvent(new CustomEvent(PICK, { bubbles: true, detail: { bar: index } }));
    }
  };
  window.addEventListener("click", onClick, true);
  let tries = 0;
  const timer = setInterval(() => {
    const explorer = explorerOf(el);
    if (explorer && banner.parentElement !== explorer) explorer.prepend(banner); // full width, on top
    if (explorer) disableIn(explorer);
    if (++tries > 40) clearInterval(timer);
  }, 250);
  return () => {
    clearInterval(timer);
    window.removeEventListener("click", onClick, true);
  };
}

/** Outline the neuron bars of the selected channels (bqplot cannot sync its own selection here). */
export function markBars(el, barChannels, channels) {
  const bars = explorerOf(el)?.querySelector(".clrp-neuron-bars");
  if (!bars) return;
  bars.querySelectorAll(".bargroup").forEach((group, i) => {
    const on = channels.includes(barChannels[i]);
    for (const rect of group.querySelectorAll("rect.bar")) {
      rect.style.stroke = on ? "currentColor" : "none";
      rect.style.strokeWidth = on ? "2px" : "0";
    }
    group.classList.toggle("clrp-snapshot-selected", on);
  });
}

/**
 * A neuron view in snapshot mode: decode the embedded maps, and on PICK events of its Explorer
 * toggle channels locally (at most two) and hand `show` what to draw (null: the saved view).
 */
export function snapshotNeurons(el, model, show) {
  const snap = model.get("snapshot");
  const size = model.get("height") * model.get("width");
  const byChannel = new Map();
  const byGrid = new Map(); // token layers: each channel's patch-grid panel, stored after the maps
  const n = snap.channels.length;
  const gridTitles = (snap.grid_titles || []).length === n ? snap.grid_titles : [];
  const labels = new Map(snap.channels.map((c, i) => [c, snap.labels[i] ?? `c${c}`]));
  let channels = [...((model.get("state") || {}).channels || [])];
  let version = 0;
  const ready = inflate(toUint8(model.get("snapshot_maps"))).then((codes) => {
    dequantise(codes, snap.scales, size).forEach((m, i) => {
      if (i < n) byChannel.set(snap.channels[i], m);
      else if (gridTitles.length) byGrid.set(snap.channels[i - n], { map: m, title: gridTitles[i - n] });
    });
  });

  function view() {
    const names = channels.map((c) => labels.get(c));
    const maps = channels.map((c) => byChannel.get(c));
    const how = snap.how || "conditional";
    const state = { channels, view: ["empty", "single", "compare"][channels.length], snapshot_version: ++version };
    if (channels.length === 2) {
      const [a, b] = maps;
      return {
        maps: [a, b, a.map((v, j) => v - b[j])],
        titles: [`A: ${names[0]}`, `B: ${names[1]}`, "A − B"],
        modes: ["", "", "signed"],
        legends: ["", "", "red where A is stronger, blue where B is"],
        caption: `${names[0]} vs ${names[1]} (${how}), from the 8-bit maps saved in this snapshot`,
        state,
      };
    }
    if (channels.length === 1) {
      const grid = byGrid.get(channels[0]);
      return {
        maps: grid ? [...maps, grid.map] : maps,
        titles: grid ? [`${names[0]} (${how})`, grid.title] : [`${names[0]} (${how})`],
        modes: grid ? ["", ""] : [""],
        caption: `${names[0]} of ${snap.layer ?? "the layer"}, ${how} (saved in this snapshot); click a second bar to compare`,
        state,
      };
    }
    return { maps: [], titles: [], modes: [], caption: "click a neuron bar or a thumbnail to see its map", state };
  }

  const onPick = async (e) => {
    if (explorerOf(e.target) !== explorerOf(el)) return;
    await ready;
    const channel = e.detail.bar !== undefined ? (snap.bar_channels || [])[e.detail.bar] : e.detail.channel;
    if (channel === undefined) return;
    if (!byChannel.has(channel)) {
      show({ ...view(), caption: `c${channel}'s map is not saved in this snapshot; run the notebook to see it` });
      return;
    }
    channels = toggleChannel(channels, channel);
    show(view());
    markBars(el, snap.bar_channels || [], channels);
    el.dispatchEvent(new CustomEvent(PICKED, { bubbles: true, detail: { channels } }));
  };
  document.addEventListener(PICK, onPick);
  return () => document.removeEventListener(PICK, onPick);
}
