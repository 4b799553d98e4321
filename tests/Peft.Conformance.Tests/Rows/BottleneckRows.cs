using System.Text.Json.Nodes;

namespace Peft.Conformance.Tests;

/// <summary>The bottleneck family's rows (inserted adapters, <see cref="InsertedConformanceCase"/>): Houlsby, Pfeiffer,
/// parallel and scaled parallel with the zero-up init (the base model at init, bit-equal), Houlsby with the adapters
/// library's <c>bert</c> init, Compacter and Compacter++ (PHM layers with one shared rule; not the identity at init, within
/// 1e-4 of it).
/// On <see cref="TinyStack"/> (width 8): reduction factor 2 (bottleneck 4); Compacter with phm_dim 2.</summary>
public static class BottleneckRows
{
    /// <summary>The fields every BOTTLENECK file has.</summary>
    public static readonly string[] BnConfigKeys =
    {
        "peft_type", "architecture", "adapter_name", "reduction_factor", "non_linearity", "mh_adapter", "output_adapter", "is_parallel",
        "scaling", "init_weights", "original_ln_before", "original_ln_after", "residual_before_ln", "ln_before", "ln_after",
    };

    /// <summary>The fields a Compacter file adds (the adapters library's PHM fields).</summary>
    public static readonly string[] PhmConfigKeys =
    {
        "phm_layer", "phm_dim", "phm_rank", "phm_init_range", "shared_phm_rule", "factorized_phm_rule", "factorized_phm_W", "shared_W_phm",
        "phm_bias", "learn_phm", "phm_c_init", "hypercomplex_nonlinearity",
    };

    private static readonly string[] s_linear = ["adapter_down.0.weight", "adapter_down.0.bias", "adapter_up.weight", "adapter_up.bias"];
    private static readonly string[] s_phm = ["adapter_down.0.W_left", "adapter_down.0.W_right", "adapter_down.0.b", "adapter_up.W_left", "adapter_up.W_right", "adapter_up.b"];

    /// <summary>The rows.</summary>
    public static readonly InsertedConformanceCase[] Cases =
    {
        Row("houlsby", BottleneckConfig.Houlsby() with { ReductionFactor = 2 }, both: true),
        Row("houlsby-bert", BottleneckConfig.Houlsby() with { ReductionFactor = 2, InitWeights = BottleneckConfig.BertInit }, both: true) with { IdentityAtInit = false },
        Row("pfeiffer", BottleneckConfig.Pfeiffer() with { ReductionFactor = 2 }, both: false),
        Row("parallel", BottleneckConfig.Parallel() with { ReductionFactor = 2 }, both: false),
        Row("scaled-parallel", BottleneckConfig.ScaledParallel(), both: false),
        Row("compacter", BottleneckConfig.Compacter() with { ReductionFactor = 2, PhmDim = 2 }, both: true) with { IdentityAtInit = false, InitTolerance = 1e-4 },
        Row("compacterpp", BottleneckConfig.CompacterPlusPlus() with { ReductionFactor = 2, PhmDim = 2 }, both: false) with { IdentityAtInit = false, InitTolerance = 1e-4 },
    };

    private static InsertedConformanceCase Row(string name, BottleneckConfig config, bool both)
    {
        var points = (both ? new[] { "attention_adapters", "output_adapters" } : new[] { "output_adapters" })
            .SelectMany(p => new[] { 0, 1 }.Select(b => $"blocks.{b}.{p}.adapters.default."));
        var keys = points.SelectMany(p => (config.PhmLayer ? s_phm : s_linear).Select(t => p + t)).ToList();
        if (config.PhmLayer) keys.Add("shared_parameters.default.phm_rule");
        var expected = new Dictionary<string, JsonNode?>
        {
            ["peft_type"] = "BOTTLENECK", ["adapter_name"] = "default", ["reduction_factor"] = config.ReductionFactor,
            ["non_linearity"] = config.NonLinearity, ["mh_adapter"] = config.MhAdapter, ["output_adapter"] = config.OutputAdapter,
            ["is_parallel"] = config.IsParallel, ["scaling"] = config.Scaling, ["init_weights"] = config.InitWeights,
        };
        if (config.PhmLayer)
        {
            expected["phm_layer"] = true;
            expected["phm_dim"] = config.PhmDim;
            expected["phm_rank"] = config.PhmRank;
            expected["phm_init_range"] = config.PhmInitRange;
            expected["shared_phm_rule"] = true;
        }

        return InsertedConformanceCase.Bottleneck(name, config) with
        {
            ExpectedKeys = keys,
            ConfigKeys = config.PhmLayer ? BnConfigKeys.Concat(PhmConfigKeys).ToArray() : BnConfigKeys,
            ExpectedConfig = expected,
        };
    }
}
