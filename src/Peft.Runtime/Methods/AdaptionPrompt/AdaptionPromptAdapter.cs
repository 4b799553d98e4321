using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// One attention's adaption prompt (LLaMA-Adapter's zero-init attention, PEFT's <c>AdaptedAttention</c>): parameters
/// <c>adaption_prompt</c> <c>[1, L, hidden]</c> ~ N(0, 1) and <c>adaption_gate</c> <c>[1]</c> = 0. The attention's own key and
/// value projections map the prompt to <c>K_p, V_p</c> (not rotated; repeated for grouped-query attention); every query
/// attends to them alone through a separate fp32 softmax, and the gated result is added to the heads before the output
/// projection: <c>z ← z + g · softmax(Q K_pᵀ / √d) V_p</c>. PEFT adds <c>o_proj(g · softmax(…) V_p)</c> after the projection,
/// which is the same while <c>o_proj</c> has no bias (Llama, Mistral); with a bias PEFT adds it a second time, this library
/// does not. Not mergeable (a softmax over the prompt's keys depends on each query).
/// </summary>
public sealed class AdaptionPromptAdapter : AttentionAdapter
{
    private readonly Parameter adaption_prompt;
    private readonly Parameter adaption_gate;

    /// <summary>Creates the adapter for an attention of shape <paramref name="geometry"/>.</summary>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="config">The configuration (validated).</param>
    /// <param name="geometry">The attention's shape (its hidden width sizes the prompt).</param>
    public AdaptionPromptAdapter(string adapterName, AdaptionPromptConfig config, AttentionGeometry geometry) : base(adapterName)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(geometry);
        config.Validate();
        Config = config;
        Geometry = geometry;
        // As PEFT (after the official repo's nn.Embedding): standard normal tokens; the gate is zero ("zero-init").
        adaption_prompt = nn.Parameter(randn(1, config.AdapterLen, geometry.HiddenSize));
        adaption_gate = nn.Parameter(zeros(1));
        register_parameter(nameof(adaption_prompt), adaption_prompt);
        register_parameter(nameof(adaption_gate), adaption_gate);
    }

    /// <summary>PEFT's tensor names, in file order.</summary>
    public static IReadOnlyList<string> TensorNames { get; } = ["adaption_prompt", "adaption_gate"];

    /// <summary>The configuration.</summary>
    public AdaptionPromptConfig Config { get; }

    /// <summary>The attention's shape.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>The prompt <c>[1, adapter_len, hidden]</c>.</summary>
    public Parameter Prompt => adaption_prompt;

    /// <summary>The gate <c>[1]</c>.</summary>
    public Parameter Gate => adaption_gate;

    /// <inheritdoc />
    public override bool AdjustsHeads => true;

    /// <inheritdoc />
    public override Tensor AdjustHeads(AttentionContext context, Tensor heads)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(heads);
        using var scope = NewDisposeScope();
        var g = context.Geometry;
        var queries = context.Queries;
        var dtype = queries.dtype;
        var (keys, values) = context.ProjectKeysValues(adaption_prompt);   // [1, kvHeads, L, d] each
        int groups = g.Heads / g.KeyValueHeads;
        if (groups > 1)
        {
            keys = keys.repeat_interleave(groups, dim: 1);
            values = values.repeat_interleave(groups, dim: 1);
        }

        // [batch, heads, time, L]: the prompt's batch of one broadcasts over the queries' batch.
        var scores = queries.matmul(keys.transpose(2, 3).to_type(dtype)) / Math.Sqrt(g.HeadDim);
        var weights = adaption_gate.to_type(dtype) * nn.functional.softmax(scores, -1, ScalarType.Float32).to_type(dtype);
        var added = weights.matmul(values.to_type(dtype));
        return (heads + added.to_type(heads.dtype)).MoveToOuterDisposeScope();
    }
}
