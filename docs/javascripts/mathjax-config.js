// MathJax settings for pymdownx.arithmatex (generic mode): $...$ inline, $$...$$ display.
// MathJax itself is not bundled; without it the equations show as their TeX source, which still reads.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { processHtmlClass: "arithmatex" },
};
