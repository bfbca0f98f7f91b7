"""Few-step generation by distillation, generic over modality (any ``net(x_t, t, **cond)``, any schedule).

- :mod:`~diffcore.distill.progressive`: progressive distillation (Salimans & Ho 2022);
- :mod:`~diffcore.distill.consistency`: consistency distillation and improved consistency training
  (Song et al. 2023; Song & Dhariwal 2023), with the boundary parameterisation of
  :mod:`~diffcore.distill.parameterization` and the discretisations of :mod:`~diffcore.distill.discretization`;
- :mod:`~diffcore.distill.ect`: continuous-time consistency training (ECT, Geng et al. 2024);
- :mod:`~diffcore.distill.lcm`: latent consistency models with guidance-scale conditioning, LCM-LoRA;
- :mod:`~diffcore.distill.reflow`: rectified-flow reflow and one-step distillation (Liu et al. 2023),
  :mod:`~diffcore.distill.straightness` to measure the effect;
- :mod:`~diffcore.distill.dmd`: distribution matching distillation (Yin et al. 2024) with DMD2's two time-scale
  update, GAN loss and backward simulation;
- :mod:`~diffcore.distill.emd`: EM distillation (Xie et al. 2024).

Every objective follows the Trainer contract ``objective(model, batch, generator) -> (loss, logs)``.
Few-step students sample through ``diffcore.sample`` with the ``consistency`` / ``lcm`` samplers (or
``ddim`` / ``euler`` for progressive and reflowed students).
"""

from diffcore.distill.consistency import (
    ConsistencyCallback,
    ConsistencyDistillation,
    ConsistencyTraining,
    TargetNetwork,
    consistency_distance,
)
from diffcore.distill.discretization import (
    ict_num_points,
    karras_sigmas,
    lognormal_interval_probs,
    time_of_data_sigma,
)
from diffcore.distill.dmd import (
    DistributionMatchingDistillation,
    DMDModel,
    backward_simulation,
    dmd_optimizer,
    student_grid,
    student_times,
)
from diffcore.distill.ect import EasyConsistencyTraining, ect_gap_ratio, ect_stage
from diffcore.distill.emd import EMDistillation, EStep
from diffcore.distill.lcm import LatentConsistencyDistillation, add_lcm_lora
from diffcore.distill.mlp import MLPDenoiser, MLPDenoiserConfig
from diffcore.distill.parameterization import ConsistencyParameterization
from diffcore.distill.progressive import (
    ProgressiveDistillation,
    ProgressiveRound,
    distill_progressively,
    two_step_target,
)
from diffcore.distill.reflow import (
    CoupledFlowMatching,
    CouplingDataset,
    couplings_loader,
    generate_couplings,
    one_step_distillation,
)
from diffcore.distill.straightness import Straightness, one_step_error, straightness
from diffcore.distill.teacher import guided, noised, ode_step

__all__ = [
    "ConsistencyCallback",
    "ConsistencyDistillation",
    "ConsistencyParameterization",
    "ConsistencyTraining",
    "CoupledFlowMatching",
    "CouplingDataset",
    "DMDModel",
    "DistributionMatchingDistillation",
    "EMDistillation",
    "EStep",
    "EasyConsistencyTraining",
    "LatentConsistencyDistillation",
    "MLPDenoiser",
    "MLPDenoiserConfig",
    "ProgressiveDistillation",
    "ProgressiveRound",
    "Straightness",
    "TargetNetwork",
    "add_lcm_lora",
    "backward_simulation",
    "consistency_distance",
    "couplings_loader",
    "distill_progressively",
    "dmd_optimizer",
    "ect_gap_ratio",
    "ect_stage",
    "generate_couplings",
    "guided",
    "ict_num_points",
    "karras_sigmas",
    "lognormal_interval_probs",
    "noised",
    "ode_step",
    "one_step_distillation",
    "one_step_error",
    "straightness",
    "student_grid",
    "student_times",
    "time_of_data_sigma",
    "two_step_target",
]
