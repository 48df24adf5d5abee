// The token prompt: a form in a dialog (never window.prompt), shown when the API answers
// 401. The token is kept in sessionStorage for this browser session.

import { token } from "./api.js";
import { byId } from "./dom.js";

export class TokenPrompt {
  /** onToken(): called once a token has been given. */
  constructor(onToken) {
    this.dialog = byId("token-dialog");
    this.form = byId("token-form");
    this.input = byId("token-input");
    this.error = byId("token-error");
    this.reopen = byId("token-open");
    this.forget = byId("token-forget");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = this.input.value.trim();
      if (!value) {
        this.error.textContent = "Enter a token.";
        this.input.focus();
        return;
      }
      token.set(value);
      this.input.value = "";
      this.dialog.close();
      this.syncButtons();
      onToken();
    });
    byId("token-dismiss").addEventListener("click", () => this.dialog.close());
    this.reopen.addEventListener("click", () => this.ask());
    this.forget.addEventListener("click", () => {
      token.clear();
      this.syncButtons();
      onToken();
    });
    this.syncButtons();
  }

  /** Ask for a token (once: a prompt already open stays as it is). */
  ask() {
    if (this.dialog.open) return;
    const rejected = Boolean(token.get());
    if (rejected) token.clear();
    this.error.textContent = rejected ? "That token was not accepted. Enter another one." : "";
    this.syncButtons(true);
    this.dialog.showModal();
    this.input.focus();
  }

  syncButtons(needed = false) {
    const held = Boolean(token.get());
    this.forget.hidden = !held;
    this.reopen.hidden = held || !needed;
  }
}
