using System.Globalization;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Compacter's part of the bottleneck adapters (<see cref="BottleneckConfig.PhmLayer"/>): the shared rule, the width checks
/// and the extension of this library's BOTTLENECK files.
/// </summary>
/// <remarks>
/// A Compacter file is a BOTTLENECK file whose <c>adapter_config.json</c> adds the adapters library's PHM fields
/// (<c>phm_layer</c> true, <c>phm_dim</c>, <c>phm_rank</c>, <c>phm_init_range</c>, and the options this library fixes:
/// <c>shared_phm_rule</c> true, <c>factorized_phm_rule</c> false, <c>factorized_phm_W</c> true, <c>shared_W_phm</c> false,
/// <c>phm_bias</c> true, <c>learn_phm</c> true, <c>phm_c_init</c> "normal", <c>hypercomplex_nonlinearity</c>
/// "glorot-uniform"; another value is refused naming the field), and whose <c>adapter_model.safetensors</c> holds each PHM
/// layer's <c>W_left</c>, <c>W_right</c> and <c>b</c> under the adapter's path (<c>adapter_down.0.</c>, <c>adapter_up.</c>)
/// and the shared rule once, as the adapters library names it: <c>shared_parameters.&lt;name&gt;.phm_rule</c>.
/// </remarks>
public static partial class BottleneckAdapters
{
    private static readonly (string Field, object Value)[] s_fixedPhmFields =
    [
        ("shared_phm_rule", true), ("factorized_phm_rule", false), ("factorized_phm_W", true), ("shared_W_phm", false),
        ("phm_bias", true), ("learn_phm", true), ("phm_c_init", "normal"), ("hypercomplex_nonlinearity", "glorot-uniform"),
    ];

    /// <summary>The file key of an adapter's shared rule (the adapters library's <c>shared_parameters.&lt;name&gt;.phm_rule</c>).</summary>
    /// <param name="adapterName">The adapter's name.</param>
    /// <returns>The key.</returns>
    public static string RuleKey(string adapterName) => $"shared_parameters.{adapterName}.{PhmLayer.RuleName}";

    private static SharedAdapterTensors NewRule(BottleneckConfig config)
    {
        long n = config.PhmDim;
        var rule = torch.empty(n, n, n);
        using (no_grad()) rule.normal_(0, config.PhmInitRange);
        return new SharedAdapterTensors([(PhmLayer.RuleName, rule)], persistent: true, trainable: [PhmLayer.RuleName]);
    }

    private static void CheckPhmWidths(BottleneckConfig config, string adapterName, string point, long reads, long output)
    {
        long r = config.Bottleneck(output);
        foreach (var (width, what) in new[] { (reads, "width the adapter reads"), (r, $"bottleneck (floor({output} / {BottleneckConfig.Show(config.ReductionFactor)}))"), (output, "output width") })
        {
            if (width % config.PhmDim != 0)
            {
                throw new PeftConfigurationException(
                    $"Compacter adapter '{adapterName}' at {point}: phm_dim = {config.PhmDim} does not divide the {what} {width}; every PHM layer splits its " +
                    $"input and output into phm_dim blocks. Choose a phm_dim that divides {reads}, {r} and {output}, or a reduction_factor whose bottleneck it divides.",
                    null, adapterName);
            }
        }
    }

    private static void ExpectPhm(Dictionary<string, long[]> expected, string prefix, BottleneckConfig config, long input, long r, long output)
    {
        long n = config.PhmDim, k = config.PhmRank;
        expected[prefix + "adapter_down.0.W_left"] = [n, input / n, k];
        expected[prefix + "adapter_down.0.W_right"] = [n, k, r / n];
        expected[prefix + "adapter_down.0.b"] = [r];
        expected[prefix + "adapter_up.W_left"] = [n, r / n, k];
        expected[prefix + "adapter_up.W_right"] = [n, k, output / n];
        expected[prefix + "adapter_up.b"] = [output];
    }

    private static void WritePhmFields(JsonObject json, BottleneckConfig config)
    {
        json["phm_layer"] = true;
        json["phm_dim"] = config.PhmDim;
        json["phm_rank"] = config.PhmRank;
        json["phm_init_range"] = config.PhmInitRange;
        foreach (var (field, value) in s_fixedPhmFields)
        {
            json[field] = value is bool b ? JsonValue.Create(b) : JsonValue.Create((string)value);
        }
    }

    private static BottleneckConfig ReadPhmFields(JsonFields fields, string path, BottleneckConfig config)
    {
        foreach (var (field, wanted) in s_fixedPhmFields)
        {
            if (!fields.Has(field)) continue;
            bool same = wanted is bool b ? fields.RequiredBool(field) == b : fields.RequiredString(field) == (string)wanted;
            if (!same)
            {
                throw new AdapterFormatException(path, field,
                    $"is {fields.Node(field)!.ToJsonString()}; this library's Compacter has only the adapters library's default {field} = " +
                    $"{(wanted is bool w ? w.ToString().ToLowerInvariant() : $"\"{wanted}\"")}.");
            }
        }

        return config with
        {
            PhmLayer = true,
            PhmDim = fields.RequiredInt("phm_dim"),
            PhmRank = fields.RequiredInt("phm_rank"),
            PhmInitRange = fields.RequiredNumber("phm_init_range"),
        };
    }

}
