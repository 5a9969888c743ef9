// A client-side router on the History API: the route lives in the address
// (/app/settings/42), which only this script knows how to render. A reload or
// a shared link asks the server for that address: with the `fallback` rule,
// the server answers it with /index.html, which loads this script again.

const routes = [
  [/^\/$/, () => "home"],
  [/^\/app\/settings\/([0-9]+)$/, (m) => `settings ${m[1]}`],
  [/^\/app\/users\/([0-9]+)$/, (m) => `user ${m[1]}`],
];

function render() {
  const path = location.pathname;
  let text = `no route for ${path}`;
  for (const [pattern, view] of routes) {
    const m = path.match(pattern);
    if (m) {
      text = view(m);
      break;
    }
  }
  document.getElementById("view").textContent = text;
  document.documentElement.dataset.route = path;
}

// Links marked data-link navigate on the client: no request to the server.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link) {
    return;
  }
  event.preventDefault();
  history.pushState(null, "", link.getAttribute("href"));
  render();
});
window.addEventListener("popstate", render);

render();
