// MathJax settings for pymdownx.arithmatex (generic mode): \( \) inline, $$ $$ display. MathJax itself is
// loaded from a CDN by the browser (mkdocs.yml, extra_javascript); offline, equations show as TeX source.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { processHtmlClass: "arithmatex" },
};
