// The chat page's and the arena's shared language code (put in each page by serve/app.py _page).
// ?lang=zh|en, else the browser's language; CATALOGS and LANG are each page's own globals.
function pickLang() {
  const q = new URLSearchParams(location.search).get("lang");
  if (q === "zh" || q === "en") return q;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}
function t(key, vars) {
  const s = CATALOGS[LANG][key] ?? CATALOGS.en[key] ?? key;  // {name}s filled in one pass: values stay as they are
  return s.replace(/\{(\w+)\}/g, (m, k) => (vars && k in vars ? String(vars[k]) : m));
}
