using static TorchSharp.torch;

namespace Peft;

/// <summary>CorDA's preprocessing settings: PEFT's <c>corda_config</c> fields that steer <c>preprocess_corda</c> (the mode,
/// <c>corda_method</c>, is each adapter's own <see cref="LoRAOptions.CorDAMethod"/>).</summary>
/// <param name="CacheFile">PEFT's <c>cache_file</c>: when it exists (non-empty) the decompositions are read from it and no
/// calibration runs; otherwise they are written to it after calibration.</param>
/// <param name="CovarianceFile">PEFT's <c>covariance_file</c>: when it exists (non-empty) the covariances are read from it;
/// otherwise they are written to it after calibration (reusable for other ranks and modes).</param>
/// <param name="Verbose">PEFT's <c>verbose</c>: one progress line per layer to <see cref="Log"/>.</param>
/// <param name="UseFloat16ForCovariance">PEFT's <c>use_float16_for_covariance</c>: each call's product in float16.</param>
/// <param name="Log">Where verbose lines go (standard output when null).</param>
public sealed record CorDASettings(
    string? CacheFile = null,
    string? CovarianceFile = null,
    bool Verbose = false,
    bool UseFloat16ForCovariance = false,
    TextWriter? Log = null);

/// <summary>
/// <c>model.PreprocessCorDA(...)</c>: PEFT's <c>preprocess_corda</c> plus the <c>corda_init</c> it enables, for the CorDA
/// adapters a model already holds (<c>[LoRA(Init = LoRAInit.CorDA)]</c> or targets with such options). With the adapters
/// disabled (PEFT calibrates the base model), the calibration forward passes feed each adapted layer's inputs to the
/// covariance through <see cref="LayerInputCapture"/> (set <see cref="LayerInputCapture.RowMask"/> per batch to leave padding
/// out); then each layer's decomposition is computed from its current weight and the layer initialises the adapter from it
/// (<see cref="AdaptedLayer.InitializeAdapterFromBase"/>): A, B and the residual base <c>W − s·B A</c>.
/// </summary>
public static class CorDAPreprocessing
{
    /// <summary>Calibrates every CorDA adapter of <paramref name="model"/> that waits for it (or those named
    /// <paramref name="adapterName"/>).</summary>
    /// <param name="model">The model.</param>
    /// <param name="run">Runs the calibration forward passes (the model's own calls); may be null when
    /// <paramref name="settings"/> names an existing cache or covariance file.</param>
    /// <param name="settings">Files and flags (PEFT's corda_config); null for none.</param>
    /// <param name="adapterName">Only this adapter; null for every waiting CorDA adapter.</param>
    /// <returns>The number of calibration calls each layer saw (0 for every layer when read from a file).</returns>
    /// <exception cref="InvalidOperationException">No CorDA adapter waits for calibration, <paramref name="run"/> is null without
    /// a usable file, or a layer saw no (or only zero) inputs.</exception>
    /// <exception cref="Serialization.AdapterFormatException">A cache or covariance file does not fit the model (named with the layer).</exception>
    public static IReadOnlyDictionary<string, long> PreprocessCorDA(this nn.Module model, Action<LayerInputCapture>? run, CorDASettings? settings = null,
        string? adapterName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        PeftModel.EnsureInitialized(model);
        settings ??= new CorDASettings();
        var targets = model.AdaptedLayers()
            .Where(l => l.Layer is AdaptedLinear)
            .SelectMany(l => l.Layer.Adapters.OfType<LoRAAdapter>().Where(a => a.AwaitsCalibration && (adapterName is null || a.AdapterName == adapterName))
                .Select(a => (l.Path, Layer: (AdaptedLinear)l.Layer, Adapter: a)))
            .ToList();
        if (targets.Count == 0)
        {
            throw new InvalidOperationException(
                $"PreprocessCorDA: the model has no CorDA adapter{(adapterName is null ? string.Empty : $" named '{adapterName}'")} waiting for calibration. " +
                "Declare [LoRA(..., Init = LoRAInit.CorDA)] (or target with LoRAOptions(Init: LoRAInit.CorDA)); an adapter calibrated already is re-initialised " +
                "only after model.ReinitializeFromBase() on the original base weights.");
        }

        var calls = new Dictionary<string, long>(StringComparer.Ordinal);
        var eigens = new List<(string Path, AdaptedLinear Layer, LoRAAdapter Adapter, CorDAEigens Eigens)>();
        try
        {
            if (CorDAFiles.Usable(settings.CacheFile))
            {
                using var cache = CorDAFiles.OpenCache(settings.CacheFile!);
                foreach (var (path, layer, adapter) in targets)
                {
                    calls[path] = 0;
                    eigens.Add((path, layer, adapter, CorDAFiles.ReadCache(cache, path, layer.Weight, adapter.Rank, adapter.Options.CorDAMethod)));
                }
            }
            else
            {
                var covariances = Covariances(model, run, settings, targets.Select(t => (t.Path, t.Layer.InFeatures)).ToList(), calls);
                try
                {
                    foreach (var (path, layer, adapter) in targets)
                    {
                        if (settings.Verbose) (settings.Log ?? Console.Out).WriteLine($"CorDA: decomposing {path} ({layer.OutFeatures} x {layer.InFeatures}, rank {adapter.Rank}, {CorDAInitialization.PeftName(adapter.Options.CorDAMethod)})");
                        using var noGrad = no_grad();
                        eigens.Add((path, layer, adapter, CorDAInitialization.Eigens(layer.Weight, covariances[path], adapter.Rank, adapter.Options.CorDAMethod, path)));
                    }
                }
                finally
                {
                    foreach (var c in covariances.Values) c.Dispose();
                }

                if (settings.CacheFile is { } cacheFile)
                {
                    CorDAFiles.WriteCache(cacheFile, eigens.Select(e => (e.Path, e.Eigens, BaseFingerprint.Of(e.Layer.Weight), e.Adapter.Options.CorDAMethod)).ToList());
                }
            }

            // Every decomposition exists before any base is rewritten; each adapter owns its own from here.
            while (eigens.Count > 0)
            {
                var (_, layer, adapter, e) = eigens[0];
                adapter.SetCorDAEigens(e);
                eigens.RemoveAt(0);
                layer.InitializeAdapterFromBase(adapter.AdapterName);
            }
        }
        finally
        {
            foreach (var e in eigens) e.Eigens.Dispose();
        }

        return calls;
    }

    private static Dictionary<string, Tensor> Covariances(nn.Module model, Action<LayerInputCapture>? run, CorDASettings settings,
        List<(string Path, long In)> layers, Dictionary<string, long> calls)
    {
        if (CorDAFiles.Usable(settings.CovarianceFile))
        {
            foreach (var (path, _) in layers) calls[path] = 0;
            return CorDAFiles.ReadCovariances(settings.CovarianceFile!, layers);
        }

        if (run is null)
        {
            throw new InvalidOperationException(
                "PreprocessCorDA: pass the calibration forward passes (run) when neither CorDASettings.CacheFile nor CovarianceFile names an existing file (PEFT's run_model).");
        }

        var wanted = layers.Select(l => l.Path).ToHashSet(StringComparer.Ordinal);
        var sums = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            using (model.DisableAdapters())
            {
                bool training = model.training;
                model.eval();
                try
                {
                    LayerInputCapture.Run(model, run, (path, _, rows) =>
                    {
                        if (rows.shape[0] == 0) return;
                        using var product = CorDAInitialization.CallCovariance(rows, settings.UseFloat16ForCovariance, path);
                        if (sums.TryGetValue(path, out var sum)) sum.add_(product);
                        else sums[path] = product.clone().DetachFromDisposeScope();
                        calls[path] = calls.GetValueOrDefault(path) + 1;
                    }, (path, _) => wanted.Contains(path));
                }
                finally
                {
                    model.train(training);
                }
            }

            foreach (var path in wanted)
            {
                if (!sums.TryGetValue(path, out var sum))
                    throw new InvalidOperationException($"PreprocessCorDA: layer '{path}' saw no calibration input; run forward passes that reach it (with RowMask leaving some rows).");
                sum.div_(calls[path]);   // PEFT divides by the number of calls, not of rows
                if (sum.dtype == ScalarType.Float16)
                {
                    sums[path] = sum.to(ScalarType.Float32);
                    sum.Dispose();
                }
            }

            if (settings.CovarianceFile is { } file) CorDAFiles.WriteCovariances(file, sums);
            return sums;
        }
        catch
        {
            foreach (var s in sums.Values) s.Dispose();
            throw;
        }
    }
}
