// Placeholder front end; the widgets work replaces it.
function render({ model, el }) {
  el.textContent = "heatmap";
  el.dataset.ready = "1";
}
export default { render };
