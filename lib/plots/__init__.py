"""The figures of the study, one module per part, and the one place figures are saved.

``common`` saves figures and holds the helpers both parts draw with, ``part_a`` draws Part A
(dual-phase steel, GTN fracture), ``generation`` Part A's generative half (VQ-VAE, PixelCNN,
generated structures and their FE check), ``sensitivity`` Part A's explanation maps against the
void maps (notebook 07), ``topology`` Part B's designs against topology optimization and the
bounds (notebook 09), ``part_b`` Part B (stochastic architected materials,
homogenization, ResNet-18 and Grad-RAM, periodic designs). Every public name is re-exported
here, so callers write ``from lib import plots; plots.save_figure(...)``.
"""
from lib.plots.common import save_figure
from lib.plots.part_a import (
    plot_dual_phase_examples,
    plot_fracture_strain_vs_fraction,
    plot_label_sensitivity,
    plot_martensite_fraction_distribution,
    plot_strength_vs_fracture_strain,
    plot_stress_strain_curves,
    plot_void_maps,
)
from lib.plots.generation import (
    plot_codebook,
    plot_fraction_boxplot,
    plot_matched,
    plot_nll,
    plot_reconstructions,
    plot_slider_view,
    plot_target_grid,
    plot_under_target,
    plot_validation,
)
from lib.plots.sensitivity import (
    plot_score_distributions,
    plot_sensitivity_panels,
    plot_void_grids,
)
from lib.plots.topology import plot_to_cells, plot_to_histories, plot_to_scatter
from lib.plots.part_b import (
    plot_accuracy_vs_paper,
    plot_design_scatter,
    plot_design_steps,
    plot_expansion_vs_stiffness,
    plot_fraction_distribution,
    plot_gradram_panels,
    plot_gradram_sanity,
    plot_parity,
    plot_property_distributions,
    plot_property_scatters,
    plot_stem_comparison,
    plot_stochastic_examples,
    plot_training_curves,
)

# every public function imported above from a submodule, in import order: a new submodule
# needs only its import line
__all__ = [name for name, value in list(globals().items())
           if not name.startswith("_") and getattr(value, "__module__", "").startswith(__name__ + ".")]
