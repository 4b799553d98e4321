using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>One layer's outcome of <see cref="EvaInitialization.InitializeEva{TBatch}"/>.</summary>
/// <param name="Path">The layer's module path.</param>
/// <param name="DeclaredRank">The rank the adapter was declared with.</param>
/// <param name="Rank">The rank EVA gave it (0: the adapter was removed from the layer, as PEFT removes it).</param>
/// <param name="Alpha">Its alpha now (scaled by Rank / DeclaredRank with <see cref="EvaConfig.AdjustScalingFactors"/>).</param>
/// <param name="SharesInputsWith">The layer whose inputs it shares and whose PCA it uses, or null.</param>
public sealed record EvaLayerResult(string Path, int DeclaredRank, int Rank, double Alpha, string? SharesInputsWith);

/// <summary>The outcome of <see cref="EvaInitialization.InitializeEva{TBatch}"/>.</summary>
/// <param name="Layers">Per layer, in the model's order.</param>
/// <param name="ForwardPasses">Forward passes run, including the first one that finds layers with equal inputs.</param>
public sealed record EvaResult(IReadOnlyList<EvaLayerResult> Layers, int ForwardPasses);

/// <summary>
/// EVA's data-driven step (PEFT's <c>initialize_lora_eva_weights</c>): for every layer holding a LoRA adapter declared with
/// <see cref="LoRAInit.EVA"/>, an <see cref="IncrementalPca"/> of the layer's inputs (read through <see cref="LayerInputCapture"/>,
/// adapters disabled, eval mode, no gradient) over the calibration batches, cycled until every component a layer needs has
/// converged (cosine similarity between consecutive estimates ≥ tau); the ranks are redistributed after each batch
/// (<see cref="EvaRanks.Distribute"/>, budget Σ r, at most round(r·rho) per layer). Each adapter is then re-created with its new
/// rank (alpha scaled by r'/r with <see cref="EvaConfig.AdjustScalingFactors"/>), <c>A</c> = the top r' components (divided by
/// √S with <see cref="EvaConfig.Whiten"/>) and <c>B = 0</c>, so the model still computes the base model; a layer given rank 0
/// loses its adapter. The base weights are not changed. Create the optimizer afterwards: the adapters' parameters are new.
/// </summary>
public static class EvaInitialization
{
    /// <summary>The default cap on forward passes (PEFT cycles the data until convergence with no cap).</summary>
    public const int DefaultMaxForwardPasses = 1000;

    /// <summary>Runs EVA on <paramref name="model"/>'s adapter <paramref name="adapterName"/>.</summary>
    /// <typeparam name="TBatch">The calibration batch type.</typeparam>
    /// <param name="model">The model, holding LoRA adapters declared with <see cref="LoRAInit.EVA"/>.</param>
    /// <param name="batches">The calibration batches, cycled (at least one).</param>
    /// <param name="forward">Runs the model on a batch; it sets <see cref="LayerInputCapture.RowMask"/> first to leave padding
    /// (and, with <see cref="EvaConfig.UseLabelMask"/>, ignored labels: <see cref="EvaConfig.RowMask"/>) out of the PCA.</param>
    /// <param name="config">EVA's settings (null: PEFT's defaults).</param>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="maxForwardPasses">Fails, naming the layers still running, after this many forward passes.</param>
    /// <returns>The ranks and alphas per layer and the passes run.</returns>
    /// <exception cref="PeftConfigurationException">No layer holds such an adapter, one is merged, round(r·rho) exceeds a layer's
    /// input width, or the PCA did not converge within <paramref name="maxForwardPasses"/>.</exception>
    public static EvaResult InitializeEva<TBatch>(this nn.Module model, IReadOnlyList<TBatch> batches, Action<TBatch, LayerInputCapture> forward,
        EvaConfig? config = null, string adapterName = AdapterNames.Default, int maxForwardPasses = DefaultMaxForwardPasses)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(forward);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxForwardPasses, 2);
        config ??= new EvaConfig();
        config.Validate();
        if (batches.Count == 0) throw new ArgumentException("EVA needs at least one calibration batch (PEFT: \"dataloader is empty\").", nameof(batches));
        var layers = EvaLayers(model, adapterName);
        var maxComponents = new Dictionary<string, int>(StringComparer.Ordinal);
        int budget = 0;
        double rho = config.Rho;
        if (rho > EvaRanks.RhoThreshold)
        {
            long maxDim = model.parameters().Select(p => p.shape.Max()).DefaultIfEmpty(1).Max();
            rho = Math.Min(rho, maxDim / layers.Min(l => l.Adapter.Rank));
        }

        foreach (var (path, layer, adapter) in layers)
        {
            int k = EvaRules.MaxComponents(adapter.Rank, rho);
            if (k > layer.InFeatures)
            {
                throw new PeftConfigurationException(
                    $"EVA on '{path}': round(r · rho) = round({adapter.Rank} · {config.Rho}) = {k} components exceed the layer's {layer.InFeatures} input features. Lower EvaConfig.Rho or the rank.",
                    path, adapterName);
            }

            maxComponents[path] = k;
            budget += adapter.Rank;
        }

        bool training = model.training;
        model.eval();
        var fits = new Dictionary<string, EvaFit>(StringComparer.Ordinal);
        try
        {
            using (model.DisableAdapters())
            {
                var (equal, passes) = Calibrate(model, layers, batches, forward, config, maxComponents, budget, maxForwardPasses, fits, out var ranks);
                model.train(training);
                return Apply(model, layers, config, adapterName, equal, fits, ranks, passes);
            }
        }
        finally
        {
            model.train(training);
            foreach (var fit in fits.Values) fit.Pca.Dispose();
        }
    }

    private static List<(string Path, AdaptedLinear Layer, LoRAAdapter Adapter)> EvaLayers(nn.Module model, string adapterName)
    {
        var layers = new List<(string, AdaptedLinear, LoRAAdapter)>();
        foreach (var (path, layer) in model.AdaptedLayers())
        {
            if (layer is AdaptedLinear linear && layer.HasAdapter(adapterName) && layer.GetAdapter(adapterName) is LoRAAdapter { Options.Init: LoRAInit.EVA } lora)
            {
                if (lora.Merged)
                {
                    throw new PeftConfigurationException($"EVA on '{path}': adapter '{adapterName}' is merged; call model.Unmerge() first.", path, adapterName);
                }

                layers.Add((path, linear, lora));
            }
        }

        if (layers.Count == 0)
        {
            throw new PeftConfigurationException(
                $"EVA found no LoRA adapter '{adapterName}' declared with Init = LoRAInit.EVA. Declare [LoRA(..., Init = LoRAInit.EVA)] " +
                "(or target the layers with new LoRAOptions(..., Init: LoRAInit.EVA)) before calling InitializeEva.", null, adapterName);
        }

        return layers;
    }

    private static (Dictionary<string, string> Equal, int Passes) Calibrate<TBatch>(nn.Module model, List<(string Path, AdaptedLinear Layer, LoRAAdapter Adapter)> layers,
        IReadOnlyList<TBatch> batches, Action<TBatch, LayerInputCapture> forward, EvaConfig config, Dictionary<string, int> maxComponents, int budget,
        int maxForwardPasses, Dictionary<string, EvaFit> fits, out Dictionary<string, int> ranks)
    {
        var paths = new HashSet<string>(layers.Select(l => l.Path), StringComparer.Ordinal);
        var equal = EqualInputs(model, layers, batches[0], forward, paths, maxComponents);
        foreach (var (path, layer, _) in layers)
        {
            if (!equal.ContainsKey(path)) fits[path] = new EvaFit(new IncrementalPca(maxComponents[path], layer.InFeatures));
        }

        ranks = new Dictionary<string, int>(maxComponents, StringComparer.Ordinal);
        int passes = 1;
        for (int step = 0; ; step++)
        {
            foreach (var (path, fit) in fits)
            {
                fit.Active = !fit.Converged(ranks[path]);
            }

            if (fits.Values.All(f => !f.Active)) break;
            if (passes >= maxForwardPasses)
            {
                throw new PeftConfigurationException(
                    $"EVA's PCA did not converge within {maxForwardPasses} forward passes on: {string.Join(", ", fits.Where(f => f.Value.Active).Select(f => $"'{f.Key}'"))} " +
                    $"(tau = {config.Tau}). Give more or larger calibration batches, lower EvaConfig.Tau, or raise maxForwardPasses.");
            }

            LayerInputCapture.Run(model, capture => forward(batches[step % batches.Count], capture), (path, _, rows) =>
            {
                if (fits.TryGetValue(path, out var fit) && fit.Active) fit.Update(rows, config.Tau);
            }, (path, _) => fits.ContainsKey(path));
            passes++;
            if (fits.Values.Any(f => f.Pca.Components is null)) continue;
            ranks = Distribution(layers, fits, equal, maxComponents, budget);
        }

        return (equal, passes);
    }

    /// <summary>One forward pass to find layers whose inputs are identical (PEFT hashes them): their PCA is computed once.</summary>
    private static Dictionary<string, string> EqualInputs<TBatch>(nn.Module model, List<(string Path, AdaptedLinear Layer, LoRAAdapter Adapter)> layers,
        TBatch first, Action<TBatch, LayerInputCapture> forward, HashSet<string> paths, Dictionary<string, int> maxComponents)
    {
        var seen = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            LayerInputCapture.Run(model, capture => forward(first, capture), (path, _, rows) =>
            {
                if (!seen.ContainsKey(path)) seen[path] = rows.clone().DetachFromDisposeScope();
            }, (path, _) => paths.Contains(path));
            var equal = new Dictionary<string, string>(StringComparer.Ordinal);
            var representatives = new List<string>();
            foreach (var (path, _, _) in layers)
            {
                if (!seen.TryGetValue(path, out var rows))
                {
                    throw new PeftConfigurationException(
                        $"EVA on '{path}': the calibration forward did not reach this layer. The forward callback must run the model on the batch.", path, null);
                }

                string? match = representatives.FirstOrDefault(r => seen[r].shape.SequenceEqual(rows.shape) && AllEqual(seen[r], rows));
                if (match is null) representatives.Add(path);
                else equal[path] = match;
            }

            foreach (var group in equal.GroupBy(e => e.Value))
            {
                int max = group.Select(e => maxComponents[e.Key]).Append(maxComponents[group.Key]).Max();
                maxComponents[group.Key] = max;
                foreach (var e in group) maxComponents[e.Key] = max;
            }

            return equal;
        }
        finally
        {
            foreach (var t in seen.Values) t.Dispose();
        }
    }

    private static bool AllEqual(Tensor a, Tensor b)
    {
        using var same = a.eq(b).all();
        return same.item<bool>();
    }

    private static Dictionary<string, int> Distribution(List<(string Path, AdaptedLinear Layer, LoRAAdapter Adapter)> layers, Dictionary<string, EvaFit> fits,
        Dictionary<string, string> equal, Dictionary<string, int> maxComponents, int budget)
    {
        // PEFT's order: the layers with their own PCA first, then the equal-input ones.
        var ordered = layers.Where(l => !equal.ContainsKey(l.Path)).Concat(layers.Where(l => equal.ContainsKey(l.Path)))
            .Select(l => (l.Path, (IReadOnlyList<double>)fits[equal.GetValueOrDefault(l.Path, l.Path)].Ratios(), maxComponents[l.Path]))
            .ToList();
        return EvaRanks.Distribute(ordered, budget, equal);
    }

    private static EvaResult Apply(nn.Module model, List<(string Path, AdaptedLinear Layer, LoRAAdapter Adapter)> layers, EvaConfig config, string adapterName,
        Dictionary<string, string> equal, Dictionary<string, EvaFit> fits, Dictionary<string, int> ranks, int passes)
    {
        var results = new List<EvaLayerResult>();
        foreach (var (path, layer, adapter) in layers)
        {
            int rank = ranks[path];
            var fit = fits[equal.GetValueOrDefault(path, path)];
            if (!fit.Converged(rank)) throw new InvalidOperationException($"EVA: layer '{path}' was given rank {rank} before its components converged.");
            var options = adapter.Options;
            // PEFT rescales alpha only for a layer that keeps an adapter (rank 0 removes it first).
            double alpha = rank != 0 && rank != options.Rank && config.AdjustScalingFactors ? options.Alpha * rank / options.Rank : options.Alpha;
            results.Add(new EvaLayerResult(path, options.Rank, rank, alpha, equal.GetValueOrDefault(path)));
            var active = layer.ActiveAdapters.ToArray();
            layer.DeleteAdapter(adapterName);
            if (rank == 0)
            {
                var remaining = active.Where(a => a != adapterName && layer.HasAdapter(a)).ToArray();
                if (remaining.Length > 0) layer.SetActiveAdapters(remaining);
                continue;
            }

            layer.WithAdapter(adapterName, options with { Rank = rank, Alpha = alpha, Eva = new EvaSettings(config, options.Rank, options.Alpha) });
            var created = (LoRAAdapter)layer.GetAdapter(adapterName);
            using (no_grad())
            using (var scope = NewDisposeScope())
            {
                var a = fit.Pca.Components!.narrow(0, 0, rank);
                if (config.Whiten) a = a / fit.Pca.SingularValues!.narrow(0, 0, rank).sqrt().view(-1, 1);
                created.A.copy_(a.to(created.A.dtype));
                created.B.zero_();
            }

            layer.SetActiveAdapters(active);
        }

        model.ApplyTrainability();
        return new EvaResult(results, passes);
    }

    /// <summary>One layer's PCA and the convergence of its components.</summary>
    private sealed class EvaFit(IncrementalPca pca)
    {
        private bool[] _converged = new bool[pca.ComponentCount];

        public IncrementalPca Pca { get; } = pca;

        public bool Active { get; set; } = true;

        /// <summary>Whether the first <paramref name="rank"/> components have converged (true for rank 0).</summary>
        public bool Converged(int rank) => _converged.Take(rank).All(c => c);

        public double[] Ratios() => Pca.ExplainedVarianceRatio!.to(ScalarType.Float64).data<double>().ToArray();

        public void Update(Tensor rows, double tau)
        {
            // PEFT skips a batch with fewer rows than components.
            if (rows.shape[0] < Pca.ComponentCount) return;
            using var previous = Pca.Components?.clone();
            Pca.PartialFit(rows);
            if (previous is null) return;
            using var scope = NewDisposeScope();
            var current = Pca.Components!;
            var dots = (current * previous).sum(dim: 1, keepdim: false);
            var norms = (current.norm(1, keepdim: false) * previous.norm(1, keepdim: false)).clamp_min(1e-8);
            var similarity = (dots / norms).data<double>().ToArray();
            _converged = similarity.Select(s => s >= tau).ToArray();
        }
    }
}
