using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Captures the inputs of a model's wrapped linear layers while the caller runs forward passes over calibration batches: the
/// one mechanism data-driven initialisations read their statistics through (CorDA's input covariance, EVA's incremental PCA
/// of layer inputs; docs/ARCHITECTURE.md, "Calibration"). Each selected <see cref="AdaptedLinear"/> hands every forward's
/// input, flattened to rows <c>[rows, in]</c>, detached and without gradient, to the observer, with the padding rows of
/// <see cref="RowMask"/> removed. Disposing the capture detaches it; forward passes are unchanged otherwise.
/// </summary>
public sealed class LayerInputCapture : IDisposable
{
    private readonly List<(string Path, AdaptedLinear Layer)> _layers;
    private readonly Dictionary<string, long> _rows = new(StringComparer.Ordinal);
    private readonly Action<string, AdaptedLinear, Tensor> _observer;
    private bool _disposed;

    private LayerInputCapture(List<(string Path, AdaptedLinear Layer)> layers, Action<string, AdaptedLinear, Tensor> observer)
    {
        _layers = layers;
        _observer = observer;
        foreach (var (path, layer) in layers)
        {
            _rows[path] = 0;
            layer.InputObserver = input => Observe(path, layer, input);
        }
    }

    /// <summary>The captured layers' paths, in walk order.</summary>
    public IReadOnlyList<string> Layers => _layers.Select(l => l.Path).ToList();

    /// <summary>Rows handed to the observer so far, per layer path (after masking).</summary>
    public IReadOnlyDictionary<string, long> Rows => _rows;

    /// <summary>
    /// Which positions of the next forward passes are real (true) rather than padding (false): a boolean tensor whose
    /// elements match, in order, a layer input's leading dimensions (<c>[batch, tokens]</c> for <c>[batch, tokens, in]</c>
    /// inputs). Null (the default) keeps every row. Set it before each calibration batch; a layer whose input does not have
    /// that many rows is refused naming the layer.
    /// </summary>
    public Tensor? RowMask { get; set; }

    /// <summary>Starts capturing the inputs of <paramref name="model"/>'s wrapped linear layers (every one, or those
    /// <paramref name="select"/> accepts).</summary>
    /// <param name="model">The model.</param>
    /// <param name="observer">Receives the layer's path, the layer and its input rows <c>[rows, in]</c> (valid during the call
    /// only: copy what you keep).</param>
    /// <param name="select">Which layers to capture (by path and layer); null for all.</param>
    /// <returns>The capture; dispose it to stop.</returns>
    /// <exception cref="InvalidOperationException">A selected layer is captured already (one capture at a time per layer).</exception>
    public static LayerInputCapture Start(nn.Module model, Action<string, AdaptedLinear, Tensor> observer, Func<string, AdaptedLinear, bool>? select = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(observer);
        var layers = ModuleTree.Layers(model)
            .Where(l => l.Layer is AdaptedLinear linear && (select?.Invoke(l.Path, linear) ?? true))
            .Select(l => (l.Path, (AdaptedLinear)l.Layer))
            .ToList();
        var busy = layers.FirstOrDefault(l => l.Item2.InputObserver is not null);
        if (busy.Path is not null)
        {
            throw new InvalidOperationException($"Layer '{busy.Path}' is captured already; dispose the other LayerInputCapture first.");
        }

        return new LayerInputCapture(layers, observer);
    }

    /// <summary>Runs <paramref name="run"/> (the calibration forward passes) while capturing, then stops.</summary>
    /// <param name="model">The model.</param>
    /// <param name="run">Runs the forward passes; it may set <see cref="RowMask"/> before each batch.</param>
    /// <param name="observer">As <see cref="Start"/>.</param>
    /// <param name="select">As <see cref="Start"/>.</param>
    /// <returns>Rows captured per layer path.</returns>
    public static IReadOnlyDictionary<string, long> Run(nn.Module model, Action<LayerInputCapture> run, Action<string, AdaptedLinear, Tensor> observer,
        Func<string, AdaptedLinear, bool>? select = null)
    {
        ArgumentNullException.ThrowIfNull(run);
        using var capture = Start(model, observer, select);
        using (no_grad())
        {
            run(capture);
        }

        return new Dictionary<string, long>(capture._rows, StringComparer.Ordinal);
    }

    /// <summary>Sums <c>XᵀX</c> (float64) and counts the rows of every selected layer's inputs over the calibration batches
    /// <paramref name="run"/> feeds: the second-moment statistic CorDA's covariance is built from.</summary>
    /// <param name="model">The model.</param>
    /// <param name="run">Runs the forward passes.</param>
    /// <param name="select">Which layers; null for all.</param>
    /// <returns>Per layer path, <c>Σ XᵀX</c> <c>[in, in]</c> (the caller disposes it) and the number of rows.</returns>
    public static IReadOnlyDictionary<string, (Tensor SecondMoment, long Rows)> SecondMoments(nn.Module model, Action<LayerInputCapture> run,
        Func<string, AdaptedLinear, bool>? select = null)
    {
        var sums = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            var rows = Run(model, run, (path, layer, x) =>
            {
                using var x64 = x.to(ScalarType.Float64);
                using var product = x64.t().matmul(x64);
                if (sums.TryGetValue(path, out var sum))
                {
                    sum.add_(product);
                }
                else
                {
                    sums[path] = product.clone().DetachFromDisposeScope();
                }
            }, select);
            return rows.Where(r => sums.ContainsKey(r.Key)).ToDictionary(r => r.Key, r => (sums[r.Key], r.Value), StringComparer.Ordinal);
        }
        catch
        {
            foreach (var sum in sums.Values) sum.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var (_, layer) in _layers)
        {
            layer.InputObserver = null;
        }
    }

    private void Observe(string path, AdaptedLinear layer, Tensor input)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var rows = input.detach().reshape(-1, layer.InFeatures);
        if (RowMask is { } mask)
        {
            var flat = mask.reshape(-1);
            if (flat.shape[0] != rows.shape[0])
            {
                throw new InvalidOperationException(
                    $"Layer '{path}' saw {rows.shape[0]} input rows but RowMask has {flat.shape[0]} positions; the mask must match the " +
                    "layer input's leading dimensions (e.g. [batch, tokens]). Set RowMask per batch, or leave it null to keep every row.");
            }

            rows = rows.index_select(0, flat.to(ScalarType.Bool).nonzero().reshape(-1).to(rows.device));
        }

        _rows[path] += rows.shape[0];
        _observer(path, layer, rows);
    }
}
