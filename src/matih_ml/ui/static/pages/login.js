// Log in with an API key (mk_...) or a JWT. The credential stays in this tab only.
import { errorBox, h, login, navigate } from "../app.js";

export async function render(main) {
  const input = h("textarea", { id: "credential", rows: 3, required: true, autocomplete: "off", spellcheck: "false" });
  const out = h("div", { id: "login-error" });
  const form = h("form", { id: "login", class: "card narrow" },
    h("h1", {}, "Log in"),
    h("label", { for: "credential" }, "API key or JWT"),
    input,
    h("button", { type: "submit", id: "login-submit" }, "Log in"),
    out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    out.replaceChildren();
    const r = await login(input.value);
    if (!r.ok) { out.append(errorBox(r.error)); return; }
    navigate("#/models");
  });
  main.append(form);
  input.focus();
}
