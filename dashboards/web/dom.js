// Building DOM nodes without innerHTML: every string from the API becomes a
// text node, so a span name or a URL can never inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setAttributes(node, attributes) {
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      // Through the CSSOM: allowed by the page's Content-Security-Policy,
      // unlike style attributes.
      for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, v);
    } else {
      node.setAttribute(key, value === true ? "" : value);
    }
  }
}

// An HTML element: h("td", { class: "num" }, "12 ms").
export function h(tag, attributes, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  return append(node, children);
}

// An SVG element.
export function s(tag, attributes, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attributes);
  return append(node, children);
}

// A table from a header row and rows of cells (nodes or strings).
export function table(headers, rows, attributes = {}) {
  return h(
    "table",
    attributes,
    h("thead", null, h("tr", null, headers.map((text) => h("th", null, text)))),
    h("tbody", null, rows),
  );
}

// The "nothing here yet" paragraph every page uses.
export function empty(text) {
  return h("p", { class: "empty" }, text);
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", null, title), children);
}
