"""Theory, computed: the paper's NTK / information-geometry quantities on real models.

Public API:
- `empirical_ntk`, `naive_ntk`, `NTKResult`          (ntk: Eq. 6, FF vs LoRA trainable sets)
- `fisher_eigenvalues`, `loss_gradient_gram`          (fisher: Eq. 8 via the dual Gram)
- `information_bits_logdet`, `information_bits_paper`, `renyi_entropy`, `summarize_spectrum`
                                                      (information: Eqs. 9-10)
- `theorem_3_4_check`, `h_prime_map`, `marchenko_pastur_bounds`  (spectrum: Thm 3.4, Eq. 18, Fig. 3)
- `TheoryConfig`, `compute_theory`                    (experiment: the "theory" run kind)
- `kernel_summary`, `m_prime`, `gradient_alignment`, `theorem_3_6_check`  (measures)
- `plot_fig3`, `fig3_grid_from_results`               (figures)
Theory against measured robustness (matching theory and training runs, Spearman's ρ) is the
report's: `ttrlab.report.theory_vs_measured`. See docs/theory.md.
"""
from ttrlab.theory.experiment import TheoryConfig, compute_theory
from ttrlab.theory.figures import fig3_grid_from_results, plot_fig3
from ttrlab.theory.fisher import fisher_eigenvalues, loss_gradient_gram
from ttrlab.theory.information import (
    information_bits_logdet,
    information_bits_paper,
    renyi_entropy,
    summarize_spectrum,
)
from ttrlab.theory.measures import gradient_alignment, kernel_summary, m_prime, theorem_3_6_check
from ttrlab.theory.ntk import NTKResult, empirical_ntk, naive_ntk
from ttrlab.theory.spectrum import h_prime_map, marchenko_pastur_bounds, theorem_3_4_check

__all__ = [
    "NTKResult", "empirical_ntk", "naive_ntk",
    "fisher_eigenvalues", "loss_gradient_gram",
    "information_bits_logdet", "information_bits_paper", "renyi_entropy", "summarize_spectrum",
    "theorem_3_4_check", "h_prime_map", "marchenko_pastur_bounds",
    "TheoryConfig", "compute_theory",
    "kernel_summary", "m_prime", "gradient_alignment", "theorem_3_6_check",
    "plot_fig3", "fig3_grid_from_results",
]
