// Starts Swagger UI on the page's #swagger-ui element with the document its data-spec-url
// names. A file of its own, not an inline script: the page's Content-Security-Policy allows
// scripts from its own origin only.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayOperationId: true,
    // No call to the public validator: the page talks to its own origin only.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
