// Submitting a task: a form made from the task type's parameter JSON Schema
// (GET /task-types), with the API's 422 field errors shown next to their fields.

import { api, ApiError } from "./api.js";
import { byId, clear, el } from "./dom.js";
import { shortId } from "./format.js";

const OPTIONS = ["delay", "priority", "timeout"]; // fields of the submission itself

/** The one JSON type a schema asks for (an Optional's non-null one), or null. */
function typeOf(schema) {
  if (typeof schema.type === "string") return schema.type;
  const branches = (schema.anyOf ?? schema.oneOf ?? []).filter((branch) => branch.type !== "null");
  return branches.length === 1 && typeof branches[0].type === "string" && !branches[0].enum
    ? branches[0].type : null;
}

/** How a parameter is entered: "integer" | "number" | "string" | "boolean" | "enum" | "json". */
function kindOf(schema) {
  if (Array.isArray(schema.enum)) return "enum";
  const type = typeOf(schema);
  return ["integer", "number", "string", "boolean"].includes(type) ? type : "json";
}

export class SubmitForm {
  /** actions: {submitted(task), failed(error)}. */
  constructor(actions) {
    this.actions = actions;
    this.form = byId("submit-form");
    this.select = byId("task-type");
    this.description = byId("task-type-description");
    this.params = byId("params");
    this.formError = byId("submit-error");
    this.result = byId("submit-result");
    this.button = byId("submit-button");
    this.types = new Map();
    this.fields = new Map(); // error field name -> {input, error, parse}
    this.select.addEventListener("change", () => this.renderFields());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    for (const name of OPTIONS) this.register(name, byId(`option-${name}`), "number");
  }

  setTypes(types) {
    const chosen = this.select.value;
    this.types = new Map(types.map((type) => [type.name, type]));
    clear(this.select).append(...types.map((type) => el("option", { value: type.name, text: type.name })));
    if (this.types.has(chosen)) this.select.value = chosen;
    this.button.disabled = types.length === 0;
    this.renderFields();
  }

  register(field, input, kind, extra = {}) {
    const error = el("p", { class: "field-error", id: `${input.id}-error` });
    input.after(error);
    input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby"), error.id]
      .filter(Boolean).join(" "));
    this.fields.set(field, { input, error, kind, ...extra });
  }

  renderFields() {
    for (const name of [...this.fields.keys()]) if (!OPTIONS.includes(name)) this.fields.delete(name);
    const type = this.types.get(this.select.value);
    this.description.textContent = type?.description ?? "";
    const legend = el("legend", { text: "Arguments" });
    clear(this.params).append(legend);
    const schema = type?.parameters ?? {};
    const required = new Set(schema.required ?? []);
    const properties = Object.entries(schema.properties ?? {});
    if (!properties.length) this.params.append(el("p", { class: "hint", text: "This task takes no arguments." }));
    properties.forEach(([name, property], index) => {
      this.params.append(this.field(name, property, required.has(name), `param-${index}`));
    });
    this.clearErrors();
  }

  field(name, schema, required, id) {
    const kind = kindOf(schema);
    const label = el("label", { attrs: { for: id } }, schema.title || name,
      required ? el("span", { class: "required", text: " (required)" }) : null);
    const hint = kind === "json" ? "JSON" : kind;
    const input = makeInput(kind, schema, id);
    input.name = name;
    const help = el("p", { class: "hint", id: `${id}-hint`,
      text: [schema.description, hint].filter(Boolean).join(" · ") });
    input.setAttribute("aria-describedby", help.id);
    if (required) input.setAttribute("aria-required", "true");
    const wrapper = el("div", { class: `field field-${kind}` }, label, help, input);
    this.register(`kwargs.${name}`, input, kind, { name, required });
    return wrapper;
  }

  clearErrors() {
    this.formError.textContent = "";
    for (const { input, error } of this.fields.values()) {
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
  }

  /** The request body, or null after showing the fields that are not valid JSON. */
  collect() {
    const body = { name: this.select.value, kwargs: {} };
    const problems = [];
    for (const [field, spec] of this.fields) {
      const { value, error } = readValue(spec);
      if (error) problems.push({ field, message: error });
      else if (value !== undefined) {
        if (field.startsWith("kwargs.")) body.kwargs[spec.name] = value;
        else body[field] = value;
      }
    }
    if (problems.length) {
      this.showErrors(problems, "Some fields are not valid.");
      return null;
    }
    return body;
  }

  async submit() {
    this.clearErrors();
    this.result.textContent = "";
    const body = this.collect();
    if (!body) return;
    this.button.disabled = true;
    try {
      const task = await api.submit(body);
      this.result.textContent = "";
      this.result.append("Submitted ", el("a", { href: `#task/${encodeURIComponent(task.id)}`,
        text: `${task.name} ${shortId(task.id)}` }), ".");
      this.actions.submitted(task);
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        this.showErrors(error.fieldErrors, error.message);
      } else if (error instanceof ApiError && error.status !== 401) {
        this.formError.textContent = error.message;
      } else {
        this.actions.failed(error);
      }
    } finally {
      this.button.disabled = false;
    }
  }

  /** Each error next to its field (a nested one next to its parameter); the rest above. */
  showErrors(errors, summary) {
    const unplaced = [];
    let first = null;
    for (const { field, message } of errors) {
      const spec = this.fieldFor(field);
      if (!spec) {
        unplaced.push(`${field}: ${message}`);
        continue;
      }
      spec.error.textContent = spec.error.textContent ? `${spec.error.textContent}; ${message}` : message;
      spec.input.setAttribute("aria-invalid", "true");
      first ??= spec;
    }
    this.formError.textContent = [summary, ...unplaced].join(" ");
    first?.input.focus();
  }

  fieldFor(field) {
    const parts = String(field).split(".");
    for (let length = parts.length; length > 0; length -= 1) {
      const spec = this.fields.get(parts.slice(0, length).join("."));
      if (spec) return spec;
    }
    return field === "name" ? { input: this.select, error: this.formError } : null;
  }
}

function makeInput(kind, schema, id) {
  const initial = schema.default;
  if (kind === "boolean") {
    return el("input", { id, type: "checkbox", checked: initial === true });
  }
  if (kind === "enum") {
    const select = el("select", { id }, el("option", { value: "", text: "—" }),
      ...schema.enum.map((value, index) => el("option", { value: String(index), text: JSON.stringify(value) })));
    const chosen = schema.enum.findIndex((value) => JSON.stringify(value) === JSON.stringify(initial));
    if (chosen >= 0) select.value = String(chosen);
    select.dataset.choices = JSON.stringify(schema.enum);
    return select;
  }
  if (kind === "json") {
    return el("textarea", { id, rows: 3, spellcheck: false,
      value: initial === undefined ? "" : JSON.stringify(initial) });
  }
  const numeric = kind === "integer" || kind === "number";
  return el("input", { id, type: "text", autocomplete: "off", spellcheck: false,
    inputMode: numeric ? (kind === "integer" ? "numeric" : "decimal") : "text",
    value: initial === undefined || initial === null ? "" : String(initial) });
}

/** A field's value for the request ({value} or {error}); undefined when left empty. */
function readValue({ input, kind }) {
  if (kind === "boolean") return { value: input.checked };
  const text = input.value;
  if (text.trim() === "") return { value: undefined }; // the default applies, or the API says it is required
  if (kind === "enum") return { value: JSON.parse(input.dataset.choices)[Number(text)] };
  if (kind === "string") return { value: text };
  if (kind === "integer" || kind === "number") {
    const number = Number(text.trim());
    // Not a number: sent as typed, so that the API's own error shows next to the field.
    return { value: Number.isFinite(number) ? number : text };
  }
  try {
    return { value: JSON.parse(text) };
  } catch {
    return { error: "not valid JSON" };
  }
}
