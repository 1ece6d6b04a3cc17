document.body.insertAdjacentHTML("beforeend", "<p><small>app.js loaded</small></p>");
