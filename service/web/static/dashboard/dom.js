// Building the DOM without innerHTML: task data only ever becomes text nodes.

/**
 * An element: el("td", {class: "x", text: "y", attrs: {"aria-label": "z"}, on: {click: f}}, ...children).
 * Children are nodes or strings (strings become text nodes); null and undefined are skipped.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  return decorate(node, props, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element with these attributes. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function decorate(node, { class: className, text, attrs, on, ...properties }, children) {
  if (className) node.className = className;
  if (text != null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === false || value == null) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const [event, handler] of Object.entries(on ?? {})) node.addEventListener(event, handler);
  Object.assign(node, properties);
  for (const child of children) if (child != null) node.append(child);
  return node;
}

/** Remove every child of a node. */
export function clear(node) {
  node.replaceChildren();
  return node;
}

/** The element with this id (it must exist: the page is ours). */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}
