// The API reference: Redoc (vendored from npm, MIT: redoc-LICENSE.txt) reading /openapi.json.
"use strict";
(function () {
  var element = document.getElementById("reference");
  Redoc.init(element.dataset.spec, { hideDownloadButton: false, expandResponses: "200,202" },
    element);
})();
