// h("tag", {attr: value, onclick: fn}, ...children): DOM nodes from data.  Text is
// always set as text (never parsed as HTML), so log lines and names cannot inject.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replace an element's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits);
}

export function ms(seconds) {
  return seconds === null || seconds === undefined ? "–" : `${fmt(seconds * 1000, 1)} ms`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  return `${fmt(n / 1048576, 1)} MB`;
}
