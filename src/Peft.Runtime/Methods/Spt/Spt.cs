using Peft.Training;
using Peft.Training.Masks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// SPT (He et al., 2023, "Sensitivity-Aware Visual Parameter-Efficient Fine-Tuning"; ziplab/SPT <c>get_sensitivity</c>):
/// before training, the sensitivity <c>S = Σ_b g_b²</c> of every entry of the chosen weights is summed over a few batches;
/// the global top-τ entries are selected; a matrix with enough of them gets a LoRA adapter instead (structured), a vector
/// with enough is tuned fully, and any other weight trains its selected entries only (<see cref="ParameterMasks"/>).
/// </summary>
/// <example>
/// <code>
/// var plan = Spt.Plan(model, names, i =&gt; Loss(batches[i]), new SptOptions(Budget: 100_000));
/// using var spt = Spt.Apply(model, plan);
/// using var trainer = new AdapterTrainer(spt.Parameters.Concat(head), new TrainingOptions { Callbacks = [spt.Masks] });
/// </code>
/// </example>
/// <remarks>Not in PEFT: the structured part is a plain LoRA adapter (saved and merged as LoRA), the unstructured part
/// leaves as a <see cref="SparseDelta"/>. The model's own weights are not changed by <see cref="Plan"/>.</remarks>
public static class Spt
{
    /// <summary>
    /// <c>S = Σ_b g_b²</c> per entry of each weight over batches 0..<c>batches - 1</c>: each batch's loss is back-propagated
    /// alone; the weights require gradients only meanwhile (their flag and gradient are restored after).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="weights">Parameter names.</param>
    /// <param name="batchLoss">The loss of batch <c>i</c> (a scalar depending on the weights).</param>
    /// <param name="batches">How many batches.</param>
    /// <returns>Per weight name, its float64 sensitivity (the weight's shape).</returns>
    public static Dictionary<string, Tensor> Sensitivity(nn.Module model, IReadOnlyList<string> weights, Func<int, Tensor> batchLoss, int batches)
    {
        ArgumentNullException.ThrowIfNull(batchLoss);
        ArgumentOutOfRangeException.ThrowIfLessThan(batches, 1);
        var parameters = Find(model, weights);
        var flags = parameters.Select(p => p.requires_grad).ToArray();
        var sums = parameters.Select(p => torch.zeros_like(p, dtype: ScalarType.Float64).DetachFromDisposeScope()).ToArray();
        try
        {
            foreach (var p in parameters)
            {
                p.requires_grad = true;
                p.grad = null;
            }

            for (int b = 0; b < batches; b++)
            {
                using var scope = torch.NewDisposeScope();
                using (torch.enable_grad())
                {
                    var loss = batchLoss(b) ?? throw new InvalidOperationException($"SPT: the loss of sensitivity batch {b} is null.");
                    var grads = torch.autograd.grad([loss], parameters, allow_unused: true);
                    for (int i = 0; i < parameters.Length; i++)
                    {
                        if (grads[i] is { } g)
                        {
                            sums[i].add_(g.detach().to_type(ScalarType.Float64).square());
                        }
                    }
                }
            }
        }
        finally
        {
            for (int i = 0; i < parameters.Length; i++)
            {
                parameters[i].requires_grad = flags[i];
            }
        }

        return weights.Zip(sums).ToDictionary(p => p.First, p => p.Second, StringComparer.Ordinal);
    }

    /// <summary>The global top-<paramref name="budget"/> entries by sensitivity, as one boolean mask per weight.</summary>
    /// <param name="sensitivity">Per weight, its sensitivity (<see cref="Sensitivity"/>).</param>
    /// <param name="budget">τ (at most the entries there are).</param>
    /// <returns>Per weight name, its mask; exactly <paramref name="budget"/> entries are true over all weights.</returns>
    public static Dictionary<string, Tensor> TopTau(IReadOnlyDictionary<string, Tensor> sensitivity, long budget)
    {
        ArgumentNullException.ThrowIfNull(sensitivity);
        var names = sensitivity.Keys.ToArray();
        using var scope = torch.NewDisposeScope();
        var all = torch.cat(names.Select(n => sensitivity[n].flatten().to_type(ScalarType.Float64).cpu()).ToArray(), 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(budget, all.numel());
        ArgumentOutOfRangeException.ThrowIfLessThan(budget, 1);
        var selected = torch.zeros(all.numel(), dtype: ScalarType.Bool);
        selected.index_fill_(0, all.topk((int)budget).indexes, true);
        var masks = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var name in names)
        {
            var s = sensitivity[name];
            masks[name] = selected.narrow(0, offset, s.numel()).reshape(s.shape).to(s.device).clone().DetachFromDisposeScope();
            offset += s.numel();
        }

        return masks;
    }

    /// <summary>Measures sensitivities, selects the top τ and decides each weight's tuning (<see cref="SptAllocation"/>).</summary>
    /// <param name="model">The model (unchanged).</param>
    /// <param name="weights">Parameter names of the candidate weights.</param>
    /// <param name="batchLoss">The loss of batch <c>i</c> (<see cref="SptOptions.SensitivityBatches"/> batches are used).</param>
    /// <param name="options">Budget and allocation settings.</param>
    /// <returns>The plan.</returns>
    /// <exception cref="ArgumentException">A name is not a parameter of the model, or an option is out of range (the message names it).</exception>
    public static SptPlan Plan(nn.Module model, IEnumerable<string> weights, Func<int, Tensor> batchLoss, SptOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(weights);
        var names = weights.Distinct(StringComparer.Ordinal).ToArray();
        var parameters = Find(model, names);
        options.Validate(parameters.Sum(p => p.numel()));
        var sensitivity = Sensitivity(model, names, batchLoss, options.SensitivityBatches);
        var masks = TopTau(sensitivity, options.Budget);
        foreach (var s in sensitivity.Values)
        {
            s.Dispose();
        }

        var entries = names.Select((n, i) =>
        {
            long count = masks[n].sum().ToInt64();
            return new SptPlan.Weight(n, parameters[i].shape, count, SptAllocation.Decide(parameters[i].shape, count, options), masks[n]);
        }).ToArray();
        return new SptPlan(options, entries);
    }

    /// <summary>
    /// Applies a plan: LoRA (rank <see cref="SptOptions.Rank"/>) on the layers of the structured matrices, by configuration
    /// targets; masks on the unstructured weights and the fully tuned vectors (all true).
    /// </summary>
    /// <param name="model">The model the plan was made on.</param>
    /// <param name="plan">The plan.</param>
    /// <returns>The masks (a training callback) and the parameters to train.</returns>
    /// <exception cref="ArgumentException">A structured matrix is not the <c>weight</c> of a module LoRA can adapt.</exception>
    public static SptTraining Apply(nn.Module model, SptPlan plan)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(plan);
        var byName = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var masked = plan.Weights.Where(w => w.Tuning is SptTuning.Unstructured or SptTuning.Full).Select(w => (w, byName[w.Name])).ToArray();
        var structured = plan.Weights.Where(w => w.Tuning == SptTuning.Structured).ToArray();
        var adapters = new List<Parameter>();
        if (structured.Length > 0)
        {
            var modules = structured.Select(w => w.Name.EndsWith(".weight", StringComparison.Ordinal)
                ? w.Name[..^".weight".Length]
                : throw new ArgumentException($"SPT: the structured matrix '{w.Name}' is not a layer's weight; LoRA adapts a Linear layer's 'weight'. Leave it out of the candidate weights.", nameof(plan)));
            model.ApplyTargets(new PeftTargets(TargetModules.Names(modules), new LoRAOptions(Rank: plan.Options.Rank, Alpha: plan.Options.LoRAAlpha)));
            adapters.AddRange(model.AdapterParameters());
        }

        // Wrapping renames a wrapped layer's parameters; the masks follow the parameter objects.
        var names = new Dictionary<IntPtr, string>();
        foreach (var (name, parameter) in model.named_parameters())
        {
            names.TryAdd(parameter.Handle, name);
        }

        var masks = new ParameterMasks(model, "spt");
        foreach (var (weight, parameter) in masked)
        {
            using var mask = weight.Tuning == SptTuning.Full ? torch.ones_like(weight.Mask) : weight.Mask.clone();
            masks.Add(names[parameter.Handle], mask);
        }

        return new SptTraining(plan, masks, adapters.Concat(masks.Parameters).ToArray());
    }

    private static Parameter[] Find(nn.Module model, IReadOnlyList<string> weights)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count == 0)
        {
            throw new ArgumentException("SPT needs at least one candidate weight; pass parameter names from model.named_parameters().", nameof(weights));
        }

        var byName = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        return weights.Select(n => byName.TryGetValue(n, out var p) ? p
            : throw new ArgumentException($"SPT: the model has no parameter '{n}'; use names from model.named_parameters().", nameof(weights))).ToArray();
    }
}
