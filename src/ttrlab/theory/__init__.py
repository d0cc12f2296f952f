"""Theory, computed: the paper's NTK / information-geometry quantities on real models — the
mathematics only (the "theory" run kind that computes them for a config is
`ttrlab.kinds.theory`).

Public API:
- `empirical_ntk`, `naive_ntk`, `NTKResult`          (ntk: Eq. 6, FF vs LoRA trainable sets)
- `fisher_eigenvalues`, `loss_gradient_gram`          (fisher: Eq. 8 via the dual Gram)
- `information_bits_logdet`, `information_bits_paper`, `renyi_entropy`, `summarize_spectrum`
                                                      (information: Eqs. 9-10)
- `theorem_3_4_check`, `h_prime_map`, `marchenko_pastur_bounds`  (spectrum: Thm 3.4, Eq. 18, Fig. 3)
- `kernel_summary`, `m_prime`, `gradient_alignment`, `theorem_3_6_check`  (measures)
- `plot_fig3`, `fig3_grid_from_results`               (figures)
Theory against measured robustness (matching theory and training runs, Spearman's ρ) is the
report's: `ttrlab.report.theory_vs_measured`. See docs/theory.md.
"""
_PUBLIC = {
    "fig3_grid_from_results": "ttrlab.theory.figures",
    "plot_fig3": "ttrlab.theory.figures",
    "fisher_eigenvalues": "ttrlab.theory.fisher",
    "loss_gradient_gram": "ttrlab.theory.fisher",
    "information_bits_logdet": "ttrlab.theory.information",
    "information_bits_paper": "ttrlab.theory.information",
    "renyi_entropy": "ttrlab.theory.information",
    "summarize_spectrum": "ttrlab.theory.information",
    "gradient_alignment": "ttrlab.theory.measures",
    "kernel_summary": "ttrlab.theory.measures",
    "m_prime": "ttrlab.theory.measures",
    "theorem_3_6_check": "ttrlab.theory.measures",
    "NTKResult": "ttrlab.theory.ntk",
    "empirical_ntk": "ttrlab.theory.ntk",
    "naive_ntk": "ttrlab.theory.ntk",
    "h_prime_map": "ttrlab.theory.spectrum",
    "marchenko_pastur_bounds": "ttrlab.theory.spectrum",
    "theorem_3_4_check": "ttrlab.theory.spectrum",
}


def __getattr__(name: str):
    if name in _PUBLIC:  # loaded on first use: the NTK and Fisher engines import torch
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ttrlab.theory' has no attribute {name!r}")


__all__ = [
    "NTKResult", "empirical_ntk", "naive_ntk",
    "fisher_eigenvalues", "loss_gradient_gram",
    "information_bits_logdet", "information_bits_paper", "renyi_entropy", "summarize_spectrum",
    "theorem_3_4_check", "h_prime_map", "marchenko_pastur_bounds",
    "kernel_summary", "m_prime", "gradient_alignment", "theorem_3_6_check",
    "plot_fig3", "fig3_grid_from_results",
]
