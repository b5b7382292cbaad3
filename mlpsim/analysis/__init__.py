"""Pure analyses of weight trajectories: arrays in, arrays or tidy records out.

A trajectory is ``params`` with shape ``(instances, checkpoints, n_params)``
(memory-mapped arrays are fine: functions stream over blocks of checkpoints).
Parameters are chosen with :func:`select` through the network's layout.
"""
from .distribution import (BINCOUNT_EDGES, QUANTILES, excess_kurtosis, hill_estimator, hill_over_training,
                           histograms, moments)
from .selection import pick_checkpoints, select, selection_names, weight_layers
from .trajectory import distance_from_init, normalize, relative_change, ensemble_stats
from .spectra import (MIN_EIGENVALUES, RANK_MEASURES, compare_tail_models, matched_random, powerlaw_fit,
                      rank_measures, shuffle_within_layers, singular_values, spectral_stats)
from .representations import hidden_activations, representation_ranks
from .correlations import (PAIR_CATEGORIES, align, correlation_by_distance, edge_distances, edge_table,
                           input_pair_correlation, mean_r2_by_category, pair_categories, permute_hidden)
from .fits import fit_decay, fit_power
from .metrics import run_metrics
from .observables import OBSERVABLES, measure

__all__ = ["BINCOUNT_EDGES", "QUANTILES", "histograms", "moments", "hill_estimator",
           "hill_over_training", "select", "selection_names", "normalize", "distance_from_init",
           "relative_change", "ensemble_stats", "RANK_MEASURES", "MIN_EIGENVALUES", "singular_values",
           "rank_measures", "powerlaw_fit", "spectral_stats", "shuffle_within_layers", "matched_random",
           "hidden_activations", "representation_ranks", "align", "permute_hidden", "edge_table",
           "edge_distances", "correlation_by_distance", "fit_decay", "input_pair_correlation",
           "PAIR_CATEGORIES", "pair_categories", "mean_r2_by_category", "fit_power", "run_metrics",
           "compare_tail_models", "pick_checkpoints", "excess_kurtosis", "weight_layers", "OBSERVABLES",
           "measure"]
