// The approvers' queue: pending requests to promote a staging version to production,
// with Approve and Reject for approvers and admins, and the requests decided so far.
// The four-eyes rule is the API's: a refusal is shown as the API words it.
import { api, badge, confirmAction, errorBox, h, navigate, when } from "../app.js";

const DECIDED = new Set(["approved", "rejected", "applied"]);

export async function render(main, { query, who }) {
  await stylesheet(main, "/ui/static/pages/approvals.css");
  const model = query.get("model") || "";
  const canDecide = who.roles.includes("approver") || who.roles.includes("admin");
  const notice = h("div", { id: "approval-notice" });
  const errors = h("div", { id: "approval-error" });
  const queue = h("section", { id: "approvals-queue" });
  const decided = h("section", { id: "approvals-decided" });

  const filter = h("input", { id: "approvals-model", type: "search", placeholder: "model", value: model, "aria-label": "Model" });
  const form = h("form", { class: "toolbar", id: "approvals-filter" },
    h("label", { for: "approvals-model" }, "Model"), filter,
    h("button", { type: "submit", class: "secondary" }, "Filter"),
    model ? h("a", { href: "#/approvals" }, "all models") : null);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const m = filter.value.trim();
    navigate(m ? `#/approvals?model=${encodeURIComponent(m)}` : "#/approvals");
  });

  main.append(...[
    h("h1", {}, "Approvals"),
    h("p", { class: "muted" },
      "Requests to promote a staging version to production. An approver or admin who did not ",
      "ask decides; approving does not promote by itself, the requester promotes afterwards."),
    canDecide ? null : h("p", { class: "muted", id: "approvals-readonly" },
      `Your roles (${who.roles.join(", ")}) can see the queue but not decide: that needs approver or admin.`),
    form, notice, errors, queue, decided].filter(Boolean));

  async function load() {
    const path = model ? `/api/v1/approvals?model_id=${encodeURIComponent(model)}` : "/api/v1/approvals";
    const r = await api("GET", path);
    if (!r.ok) {
      queue.replaceChildren(errorBox(r.error));
      decided.replaceChildren();
      return;
    }
    const items = r.data.items;
    const pending = items.filter((a) => a.status === "pending");
    const done = items.filter((a) => DECIDED.has(a.status));
    queue.replaceChildren(
      h("h2", {}, `Pending (${pending.length})`),
      pending.length ? pendingTable(pending) : h("p", { class: "muted empty", id: "approvals-empty" }, "Nothing waits for a decision."));
    decided.replaceChildren(
      h("h2", {}, `Decided (${done.length})`),
      done.length ? decidedTable(done) : h("p", { class: "muted empty", id: "decided-empty" }, "No decision yet."));
  }

  function pendingTable(rows) {
    const head = ["#", "Model", "Version", "Target", "Requested by", "When", "Comment"];
    if (canDecide) head.push("");
    return h("table", { id: "approvals-table" },
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((a) => h("tr", { dataset: { approval: a.id, status: a.status } },
        h("td", {}, String(a.id)),
        h("td", {}, modelLink(a.model_id)),
        h("td", {}, `v${a.version}`),
        h("td", {}, badge("production")),
        h("td", { class: "who" }, a.requested_by,
          a.requested_by === who.owner ? h("span", { class: "muted mine" }, " (you)") : null),
        h("td", { class: "nowrap" }, when(a.requested_at)),
        h("td", { class: "comment" }, a.comment || h("span", { class: "muted" }, "—")),
        canDecide ? h("td", { class: "actions" },
          h("button", { type: "button", class: "approve", onclick: () => decide(a, true) }, "Approve"),
          h("button", { type: "button", class: "reject secondary", onclick: () => decide(a, false) }, "Reject")) : null))));
  }

  function decidedTable(rows) {
    const head = ["#", "Model", "Version", "Status", "Requested by", "Decided by", "When", "Reason", "Comment"];
    return h("table", { id: "decided-table" },
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((a) => h("tr", { dataset: { approval: a.id, status: a.status } },
        h("td", {}, String(a.id)),
        h("td", {}, modelLink(a.model_id)),
        h("td", {}, `v${a.version}`),
        h("td", {}, h("span", { class: `badge decision-${a.status}` }, a.status)),
        h("td", { class: "who" }, a.requested_by),
        h("td", { class: "who" }, a.decided_by || ""),
        h("td", { class: "nowrap" }, when(a.decided_at)),
        h("td", { class: "reason" }, a.reason || h("span", { class: "muted" }, "—")),
        h("td", { class: "comment" }, a.comment || h("span", { class: "muted" }, "—"))))));
  }

  async function decide(a, approve) {
    notice.replaceChildren();
    errors.replaceChildren();
    const verb = approve ? "Approve" : "Reject";
    const answer = await confirmAction(
      `${verb} ${a.model_id} v${a.version}?`,
      approve
        ? `Approve version ${a.version} of ${a.model_id} for production, as asked by ${a.requested_by}. A comment is optional.`
        : `Reject the request by ${a.requested_by} to put version ${a.version} of ${a.model_id} in production. Say why.`,
      { askReason: true, requireReason: !approve });
    if (!answer) return;
    const r = await api("POST", `/api/v1/approvals/${a.id}/${approve ? "approve" : "reject"}`, { reason: answer.reason });
    if (!r.ok) {
      errors.append(errorBox(r.error));
      errors.scrollIntoView({ block: "nearest" });
      return;
    }
    notice.append(h("div", { class: "notice", role: "status" },
      approve
        ? `Approved ${a.model_id} v${a.version}: it can now be promoted to production.`
        : `Rejected ${a.model_id} v${a.version}.`));
    await load();
  }

  await load();
}

function modelLink(id) {
  return h("a", { href: `#/models/${encodeURIComponent(id)}` }, id);
}

// The page's own styles, loaded before the page shows (so a screenshot sees them).
function stylesheet(main, href) {
  return new Promise((resolve) => main.append(h("link", { rel: "stylesheet", href, onload: resolve, onerror: resolve })));
}
