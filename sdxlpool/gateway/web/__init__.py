"""The gateway's web page: static files only (index.html, app.js, style.css, favicon.ico), served by
`sdxlpool.gateway.routes.web` and shipped as package data. No build step, nothing from outside."""
