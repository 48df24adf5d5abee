// Starts Swagger UI on Offload's /docs page. A file of its own, not an inline script, so
// that the page can be sent with a Content-Security-Policy that allows scripts from its
// own origin only. The document's URL is the page's data-openapi-url (relative: the API
// may live under a prefix such as /offload).
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    validatorUrl: null,  // no call to an online validator: the page works offline
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
