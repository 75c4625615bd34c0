// Loaded as a file, not inline, so the docs page works under a CSP without 'unsafe-inline'.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#ui",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
  });
});
