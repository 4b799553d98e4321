using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Incremental PCA over minibatches of rows (Ross et al., 2008, as scikit-learn's <c>IncrementalPCA</c> and PEFT's
/// <c>peft.utils.incremental_pca</c> compute it), the statistic EVA reads: running mean and variance per feature, and per batch
/// one truncated SVD of <c>[diag(S) Vᵀ; X − x̄_batch; √(n_seen · n / n_total) (x̄_seen − x̄_batch)]</c> (the first batch: of
/// <c>X − x̄</c>), by the randomized SVD PEFT runs (<c>lowrank=True</c>: q = 2k, 4 power iterations, a fixed seed). Signs are
/// fixed so that each component's largest-magnitude entry is positive (scikit-learn's <c>svd_flip</c> on Vᵀ). Everything is
/// computed in float64.
/// </summary>
public sealed class IncrementalPca : IDisposable
{
    /// <summary>The power iterations of the randomized SVD (PEFT's <c>lowrank_niter</c>).</summary>
    public const int PowerIterations = 4;

    /// <summary>The seed of the randomized SVD's sketch, the same for every batch (PEFT's <c>lowrank_seed</c>).</summary>
    public const long SketchSeed = 42;

    private Tensor? _mean;
    private Tensor? _variance;

    /// <summary>Creates an empty fit keeping <paramref name="components"/> components of <paramref name="features"/>-wide rows.</summary>
    /// <param name="components">The number of components k (1 ≤ k ≤ features).</param>
    /// <param name="features">The row width.</param>
    public IncrementalPca(int components, long features)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(components, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(components, features);
        ComponentCount = components;
        Features = features;
    }

    /// <summary>The number of components kept.</summary>
    public int ComponentCount { get; }

    /// <summary>The row width.</summary>
    public long Features { get; }

    /// <summary>Rows seen so far.</summary>
    public long SamplesSeen { get; private set; }

    /// <summary>The principal directions <c>[k, features]</c> (float64), by decreasing singular value; null before the first batch.</summary>
    public Tensor? Components { get; private set; }

    /// <summary>The singular values of the centred data <c>[k]</c>; null before the first batch.</summary>
    public Tensor? SingularValues { get; private set; }

    /// <summary>Each component's share of the total variance, <c>S² / Σ n·var</c> <c>[k]</c>; null before the first batch.</summary>
    public Tensor? ExplainedVarianceRatio { get; private set; }

    /// <summary>Updates the fit with a batch of rows.</summary>
    /// <param name="rows">The rows <c>[n, features]</c>, n ≥ k.</param>
    public void PartialFit(Tensor rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Dimensions != 2 || rows.shape[1] != Features)
            throw new ArgumentException($"Incremental PCA of {Features}-wide rows got a tensor of shape [{string.Join(", ", rows.shape)}].", nameof(rows));
        long n = rows.shape[0];
        if (n < ComponentCount)
            throw new ArgumentException($"Incremental PCA with {ComponentCount} components needs at least that many rows per batch, got {n}.", nameof(rows));

        using var scope = NewDisposeScope();
        var x = rows.to(ScalarType.Float64);
        long total = SamplesSeen + n;
        var newSum = x.sum(dim: 0, keepdim: false);
        var lastSum = _mean is null ? zeros_like(newSum) : _mean * (double)SamplesSeen;
        var mean = (lastSum + newSum) / (double)total;

        var batchMean = newSum / (double)n;
        var centred = x - batchMean;
        var newUnnormalized = centred.square().sum(dim: 0, keepdim: false) - centred.sum(dim: 0, keepdim: false).square() / (double)n;
        Tensor variance;
        if (_variance is null)
        {
            variance = newUnnormalized / (double)total;
        }
        else
        {
            double ratio = SamplesSeen / (double)n;
            var between = (lastSum / ratio - newSum).square() * (ratio / total);
            variance = (_variance * (double)SamplesSeen + newUnnormalized + between) / (double)total;
        }

        Tensor stacked;
        if (Components is null)
        {
            stacked = x - mean;
        }
        else
        {
            var correction = (_mean! - batchMean) * Math.Sqrt(SamplesSeen / (double)total * n);
            stacked = cat(new[] { SingularValues!.view(-1, 1) * Components, centred, correction.unsqueeze(0) }, 0);
        }

        int q = (int)Math.Min(2L * ComponentCount, Math.Min(stacked.shape[0], stacked.shape[1]));
        var (_, s, v) = RandomizedSvd.Compute(stacked, q, PowerIterations, SketchSeed);
        var vt = v.t();
        // svd_flip on Vᵀ: each component's largest-magnitude entry positive.
        var largest = vt.abs().argmax(1, keepdim: true);
        var signs = vt.gather(1, largest).sign();
        signs = where(signs.eq(0), ones_like(signs), signs);
        vt = vt * signs;
        var ratios = s.square() / (variance * (double)total).sum();

        Replace(ref _mean, mean);
        Replace(ref _variance, variance);
        Components?.Dispose();
        SingularValues?.Dispose();
        ExplainedVarianceRatio?.Dispose();
        Components = vt.narrow(0, 0, ComponentCount).contiguous().DetachFromDisposeScope();
        SingularValues = s.narrow(0, 0, ComponentCount).contiguous().DetachFromDisposeScope();
        ExplainedVarianceRatio = ratios.narrow(0, 0, ComponentCount).contiguous().DetachFromDisposeScope();
        SamplesSeen = total;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _mean?.Dispose();
        _variance?.Dispose();
        Components?.Dispose();
        SingularValues?.Dispose();
        ExplainedVarianceRatio?.Dispose();
        _mean = _variance = Components = SingularValues = ExplainedVarianceRatio = null;
    }

    private static void Replace(ref Tensor? field, Tensor value)
    {
        field?.Dispose();
        field = value.DetachFromDisposeScope();
    }
}
