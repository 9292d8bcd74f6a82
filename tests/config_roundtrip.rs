//! Every schedule, path, grid and sampler parameter set survives a JSON round trip unchanged,
//! so a run can be written down and reproduced.

use flowforge::paths::*;
use flowforge::samplers::{DdimSpacing, DdpmVariance, Diffusion, SampleClipping, TimeGrid};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "{json}");
    json
}

#[test]
fn every_schedule_config_round_trips_and_builds_the_same_schedule() {
    let configs = vec![
        ScheduleConfig::CondOt(CondOtConfig::new().with_sigma_min(0.01)),
        ScheduleConfig::Cosine(CosineConfig::new()),
        ScheduleConfig::Vp(VpConfig::new().with_beta_max(12.5)),
        ScheduleConfig::LinearVp(LinearVpConfig::new()),
        ScheduleConfig::SubVp(SubVpConfig::new()),
        ScheduleConfig::Ve(VeConfig::new().with_sigma_max(80.0)),
        ScheduleConfig::PolynomialConvex(PolynomialConvexConfig::new().with_n(3.0)),
        ScheduleConfig::Edm(EdmConfig::new().with_rho(5.0)),
        ScheduleConfig::Discrete(
            DiscreteScheduleConfig::new()
                .with_beta_schedule(BetaSchedule::ScaledLinear)
                .with_rescale_zero_terminal_snr(true),
        ),
    ];
    for config in &configs {
        let json = round_trip(config);
        let back: ScheduleConfig = serde_json::from_str(&json).unwrap();
        let (a, b) = (config.init().unwrap(), back.init().unwrap());
        for t in [0.0, 0.3, 0.7, 1.0] {
            assert_eq!(a.values(t), b.values(t), "{json} at t = {t}");
        }
    }
    let path = PathConfig::StochasticInterpolant {
        schedule: ScheduleConfig::CondOt(CondOtConfig::new()),
        noise: NoiseScale::BrownianBridge { sigma: 0.5 },
    };
    round_trip(&path);
    assert!(path.init().unwrap().needs_noise());
    round_trip(&PathConfig::Affine { schedule: configs[2].clone() });
}

#[test]
fn sampler_parameters_and_grids_round_trip() {
    round_trip(&TimeGrid::shifted(10, 3.0).unwrap());
    round_trip(&DdimSpacing::Leading { steps_offset: 1 });
    round_trip(&DdpmVariance::FixedLarge);
    round_trip(&SampleClipping::Dynamic { ratio: 0.995, max_value: 1.5 });
    round_trip(&Diffusion::ReverseDiffusion { scale: 0.5 });
    round_trip(&flowforge::samplers::Ddim::new(0.3).unwrap());
    round_trip(&flowforge::samplers::EdmStochastic::new(40.0, 0.05, 50.0, 1.003).unwrap());
}

#[test]
fn invalid_sampler_parameters_in_json_are_rejected_on_load() {
    assert!(serde_json::from_str::<flowforge::samplers::Ddim>(r#"{"eta":1.5,"clipping":{"kind":"none"}}"#).is_err());
    assert!(serde_json::from_str::<flowforge::samplers::EdmStochastic>(r#"{"s_churn":1.0,"s_min":5.0,"s_max":1.0,"s_noise":1.0}"#).is_err());
    assert!(serde_json::from_str::<flowforge::samplers::Ddpm>(r#"{"variance":"fixed_small","clipping":{"kind":"clip","range":-1.0}}"#).is_err());
    assert!(serde_json::from_str::<TimeGrid>("[0.0, 0.2, 0.1]").is_err());
}
