using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// LoFiT in one attention (<see cref="LoFiTConfig"/>): for each of its selected heads <c>h</c>, a scale <c>lofit_A</c> row
/// and/or an offset <c>lofit_v</c> row (<c>[k, head_dim]</c> for <c>k</c> selected heads, N(0, InitStd)), applied to the
/// attended heads before the output projection: <c>z_h ← (1 + A_h) ⊙ z_h + v_h</c>; the other heads pass unchanged. Its L1
/// term <c>l1_lambda · Σ|A|</c> is an <see cref="ILossTermAdapter"/> term. It merges into the output projection
/// (<see cref="LoFiT.MergeLoFiT"/>): <c>W[:, slice_h] ← W[:, slice_h] ⊙ (1 + A_h)</c> column-wise and <c>b ← b + W[:, slice_h] v_h</c>.
/// </summary>
public sealed class LoFiTAdapter : AttentionAdapter, ILossTermAdapter
{
    private readonly Parameter? lofit_A;
    private readonly Parameter? lofit_v;
    private readonly Tensor heads;
    private (Tensor Columns, Tensor? Bias)? _unmerge;

    /// <summary>Creates the adapter for the heads <paramref name="selected"/> of an attention of shape <paramref name="geometry"/>.</summary>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="config">The configuration (validated).</param>
    /// <param name="geometry">The attention's shape.</param>
    /// <param name="selected">The heads this adapter acts on: distinct, ascending, each below <c>geometry.Heads</c>.</param>
    /// <exception cref="PeftConfigurationException">No head, a repeated head or one out of range (named).</exception>
    public LoFiTAdapter(string adapterName, LoFiTConfig config, AttentionGeometry geometry, IReadOnlyList<int> selected) : base(adapterName)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(geometry);
        ArgumentNullException.ThrowIfNull(selected);
        config.Validate();
        if (selected.Count == 0 || selected.Any(h => h < 0 || h >= geometry.Heads) || selected.Distinct().Count() != selected.Count)
        {
            throw new PeftConfigurationException(
                $"LoFiT heads [{string.Join(", ", selected)}] for the attention of layer {geometry.Layer}: give at least one distinct head from 0 to {geometry.Heads - 1}.",
                null, adapterName);
        }

        Config = config;
        Geometry = geometry;
        Heads = selected.Order().ToArray();
        heads = tensor(Heads.Select(h => (long)h).ToArray(), dtype: ScalarType.Int64);
        register_buffer(nameof(heads), heads, persistent: false);
        if (config.HasScale)
        {
            lofit_A = nn.Parameter(randn(Heads.Count, geometry.HeadDim).mul_(config.InitStd));
            register_parameter(nameof(lofit_A), lofit_A);
        }

        if (config.HasBias)
        {
            lofit_v = nn.Parameter(randn(Heads.Count, geometry.HeadDim).mul_(config.InitStd));
            register_parameter(nameof(lofit_v), lofit_v);
        }
    }

    /// <summary>The tensor names in files, in order: <c>lofit_A</c> (scales), <c>lofit_v</c> (offsets).</summary>
    public static IReadOnlyList<string> TensorNames { get; } = ["lofit_A", "lofit_v"];

    /// <summary>The configuration.</summary>
    public LoFiTConfig Config { get; }

    /// <summary>The attention's shape.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>The selected heads, ascending (row <c>i</c> of the vectors belongs to head <c>Heads[i]</c>).</summary>
    public IReadOnlyList<int> Heads { get; }

    /// <summary>The scales <c>[k, head_dim]</c>, or null without them.</summary>
    public Parameter? Scale => lofit_A;

    /// <summary>The offsets <c>[k, head_dim]</c>, or null without them.</summary>
    public Parameter? Bias => lofit_v;

    /// <summary>Whether the adapter is folded into the output projection (it then leaves the heads alone).</summary>
    public bool Merged => _unmerge is not null;

    /// <inheritdoc />
    public override bool AdjustsHeads => !Merged;

    /// <inheritdoc />
    public override Tensor AdjustHeads(AttentionContext context, Tensor heads)
    {
        ArgumentNullException.ThrowIfNull(heads);
        using var scope = NewDisposeScope();
        var (scale, offset) = FullVectors(heads.dtype, heads.device);
        var view = new long[] { 1, Geometry.Heads, 1, Geometry.HeadDim };
        var result = scale is null ? heads : heads * scale.view(view);
        if (offset is not null) result = result + offset.view(view);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary><c>l1_lambda · Σ|A|</c> (zero without scales or with <c>l1_lambda</c> 0).</summary>
    /// <returns>A new scalar tensor.</returns>
    public Tensor LossTerm() => lofit_A is null || Config.L1Lambda == 0
        ? zeros(Array.Empty<long>())
        : lofit_A.abs().sum().mul(Config.L1Lambda);

    /// <summary>The per-head L2 norms ‖A_h‖₂ of the scales, by head (stage 1's ranking).</summary>
    /// <returns>(head, norm) pairs.</returns>
    /// <exception cref="PeftConfigurationException">The adapter holds no scales.</exception>
    public IReadOnlyList<(int Head, double Norm)> ScaleNorms()
    {
        if (lofit_A is null)
        {
            throw new PeftConfigurationException(
                $"LoFiT adapter '{AdapterName}' at layer {Geometry.Layer} holds offsets only; heads are ranked by the scales of a stage-1 adapter (LoFiTComponents.Scale).",
                null, AdapterName);
        }

        using var _ = no_grad();
        var norms = lofit_A.detach().to_type(ScalarType.Float64).norm(1, keepdim: false).cpu().data<double>().ToArray();
        return Heads.Select((h, i) => (h, norms[i])).ToList();
    }

    /// <summary>Folds the adapter into the output projection (<see cref="LoFiTMath.Fold"/>), remembering the columns and bias
    /// it changes so <see cref="Unmerge"/> restores them exactly.</summary>
    /// <param name="insertions">The attention's insertion points (the adapter's own).</param>
    /// <exception cref="PeftConfigurationException">Already merged, the projection carries adapters of its own, or it has no bias
    /// while the adapter has offsets (the message names the layer and the fix).</exception>
    internal void Merge(AttentionInsertions insertions)
    {
        var (_, weight, bias) = CheckMerge(insertions);
        using var noGrad = no_grad();
        var columns = LoFiTMath.Columns(Heads, Geometry.HeadDim, weight.device);
        _unmerge = (weight.index_select(1, columns).clone(), bias?.clone());
        LoFiTMath.Fold(weight, bias, Heads, Geometry.HeadDim, lofit_A?.detach(), lofit_v?.detach());
    }

    /// <summary>Refuses a merge that cannot be done, before anything changes.</summary>
    /// <param name="insertions">The attention's insertion points.</param>
    /// <returns>The projection, its weight and its bias.</returns>
    /// <exception cref="PeftConfigurationException">Already merged, the projection carries adapters of its own, or it has no bias
    /// while the adapter has offsets (the message names the layer and the fix).</exception>
    internal (nn.Module Module, Tensor Weight, Tensor? Bias) CheckMerge(AttentionInsertions insertions)
    {
        ArgumentNullException.ThrowIfNull(insertions);
        if (Merged) throw new PeftConfigurationException($"LoFiT adapter '{AdapterName}' at layer {Geometry.Layer} is already merged; unmerge it first.", null, AdapterName);
        var (module, weight, bias) = insertions.OutputProjectionWeights();
        if (module is AdaptedLayer adapted && adapted.Adapters.Count > 0)
        {
            throw new PeftConfigurationException(
                $"The output projection of layer {Geometry.Layer} carries adapters ({string.Join(", ", adapted.Adapters.Select(a => a.AdapterName))}); LoFiT's scales would " +
                "also have to scale their update. Merge or delete those adapters first, then merge LoFiT.", null, AdapterName);
        }

        if (lofit_v is not null && bias is null)
        {
            throw new PeftConfigurationException(
                $"The output projection of layer {Geometry.Layer} ({module.GetType().Name}) has no bias, so LoFiT's offsets W[:, slice_h]·v_h have nowhere to go " +
                "(Llama's o_proj is bias-free). Keep LoFiT unmerged, or build the model with an output-projection bias (LlamaConfig.OutputBias, Hugging Face's attention_bias).",
                null, AdapterName);
        }

        return (module, weight, bias);
    }

    /// <summary>Restores the output projection's columns and bias as they were before <see cref="Merge"/>.</summary>
    /// <param name="insertions">The attention's insertion points.</param>
    internal void Unmerge(AttentionInsertions insertions)
    {
        if (_unmerge is not { } saved) return;
        var (_, weight, bias) = insertions.OutputProjectionWeights();
        using (no_grad())
        {
            weight.index_copy_(1, LoFiTMath.Columns(Heads, Geometry.HeadDim, weight.device), saved.Columns);
            if (bias is not null && saved.Bias is not null) bias.copy_(saved.Bias);
        }

        saved.Columns.Dispose();
        saved.Bias?.Dispose();
        _unmerge = null;
    }

    private (Tensor? Scale, Tensor? Offset) FullVectors(ScalarType dtype, Device device)
    {
        var index = heads.device == device ? heads : heads.to(device);
        bool all = Heads.Count == Geometry.Heads;
        Tensor? scale = null, offset = null;
        if (lofit_A is not null)
        {
            var a = lofit_A.to_type(dtype);
            scale = all ? a + 1 : ones(Geometry.Heads, Geometry.HeadDim, dtype: dtype, device: device).index_add(0, index, a, 1);
        }

        if (lofit_v is not null)
        {
            var v = lofit_v.to_type(dtype);
            offset = all ? v : zeros(Geometry.Heads, Geometry.HeadDim, dtype: dtype, device: device).index_add(0, index, v, 1);
        }

        return (scale, offset);
    }
}

/// <summary>LoFiT's fold into an output projection, one definition for the model merge and <c>peft merge</c>.</summary>
public static class LoFiTMath
{
    /// <summary>The projection's input columns of <paramref name="heads"/> (each head's <paramref name="headDim"/> columns).</summary>
    /// <param name="heads">Heads, in row order of the vectors.</param>
    /// <param name="headDim">Head width.</param>
    /// <param name="device">Where the index lives.</param>
    /// <returns>An int64 index of <c>k · headDim</c> columns.</returns>
    public static Tensor Columns(IReadOnlyList<int> heads, int headDim, Device device)
    {
        ArgumentNullException.ThrowIfNull(heads);
        var columns = heads.SelectMany(h => Enumerable.Range(h * headDim, headDim).Select(c => (long)c)).ToArray();
        return tensor(columns, dtype: ScalarType.Int64, device: device);
    }

    /// <summary>
    /// Folds <c>z_h ← (1 + A_h) ⊙ z_h + v_h</c> into the projection <c>o = W z + b</c> in place:
    /// <c>b ← b + Σ_h W[:, slice_h] v_h</c> (with the weight as it was), then <c>W[:, slice_h] ← W[:, slice_h] ⊙ (1 + A_h)</c>,
    /// each column scaled by its entry of <c>1 + A_h</c>. Then <c>W' z + b' = W((1 + A) ⊙ z + v) + b</c> exactly.
    /// </summary>
    /// <param name="weight">The projection's weight <c>[out, heads · headDim]</c>.</param>
    /// <param name="bias">Its bias <c>[out]</c> (required when <paramref name="offsets"/> is given).</param>
    /// <param name="heads">The heads the rows belong to.</param>
    /// <param name="headDim">Head width.</param>
    /// <param name="scales">Scales <c>[k, headDim]</c>, or null.</param>
    /// <param name="offsets">Offsets <c>[k, headDim]</c>, or null.</param>
    public static void Fold(Tensor weight, Tensor? bias, IReadOnlyList<int> heads, int headDim, Tensor? scales, Tensor? offsets)
    {
        ArgumentNullException.ThrowIfNull(weight);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var columns = Columns(heads, headDim, weight.device);
        var slice = weight.index_select(1, columns);   // [out, k·d]
        if (offsets is not null)
        {
            if (bias is null) throw new ArgumentException("LoFiT offsets fold into a bias, and this projection has none.", nameof(bias));
            bias.add_(slice.to_type(ScalarType.Float64).matmul(offsets.reshape(-1).to_type(ScalarType.Float64).to(weight.device)).to_type(bias.dtype));
        }

        if (scales is not null)
        {
            var factor = scales.reshape(-1).to_type(ScalarType.Float64).to(weight.device).add(1.0);
            weight.index_copy_(1, columns, slice.to_type(ScalarType.Float64).mul(factor).to_type(weight.dtype));
        }
    }
}
