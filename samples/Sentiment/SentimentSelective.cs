using Peft;
using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Sentiment;

/// <summary>
/// What a method that trains selected entries of the encoder's own weights (ID³, SPT) adds to a run: a training callback
/// (its masks), the weights to hand to the trainer besides the head, and whatever owns them.
/// </summary>
/// <param name="Callback">The callback to register (it zeroes masked gradients and keeps masked entries exact).</param>
/// <param name="Parameters">The encoder weights it trains (entries of them), besides the head.</param>
/// <param name="Owner">Disposed at the end of the run.</param>
/// <param name="TrainedEntries">How many entries of <paramref name="Parameters"/> train at most (the budget), for the table's count.</param>
public sealed record SelectiveTraining(ITrainingCallback Callback, IReadOnlyList<Parameter> Parameters, IDisposable Owner, long TrainedEntries);

/// <summary>Builds a <see cref="SelectiveTraining"/> once the run knows its length and data.</summary>
/// <param name="classifier">The classifier (encoder frozen, head trainable).</param>
/// <param name="totalSteps">The run's training steps.</param>
/// <param name="batchLoss">The training loss of batch <c>i</c> of the first epoch (with gradients), for methods that
/// measure sensitivities before training.</param>
/// <returns>The callback and weights.</returns>
public delegate SelectiveTraining SelectiveFactory(SentimentClassifier classifier, int totalSteps, Func<int, Tensor> batchLoss);

/// <summary>The selective methods' settings on the USE-lite encoder.</summary>
public static class SentimentSelective
{
    /// <summary>The share of the encoder's projection entries a selective method trains (1%).</summary>
    public const double BudgetShare = 0.01;

    /// <summary>The encoder's weight matrices (every 2-D weight but the embedding tables), by parameter name.</summary>
    /// <param name="classifier">The classifier.</param>
    public static IReadOnlyList<string> Matrices(SentimentClassifier classifier)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        return classifier.named_parameters()
            .Where(p => p.name.StartsWith("encoder.", StringComparison.Ordinal) && p.parameter.dim() == 2 && !p.name.Contains("embed", StringComparison.OrdinalIgnoreCase))
            .Select(p => p.name)
            .ToArray();
    }

    /// <summary>ID³ on the encoder's matrices: 1% of their entries, reached in 10 unmasking steps spread over the first
    /// half of the run, 10% of each step's entries drawn at random.</summary>
    /// <param name="classifier">The classifier.</param>
    /// <param name="totalSteps">The run's steps.</param>
    /// <param name="batchLoss">Not used (ID³ ranks entries from the training gradients as it goes).</param>
    public static SelectiveTraining Id3(SentimentClassifier classifier, int totalSteps, Func<int, Tensor> batchLoss)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        var names = Matrices(classifier);
        var parameters = classifier.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        long entries = names.Sum(n => parameters[n].numel());
        const int unmaskingSteps = 10;
        int interval = Math.Max(1, totalSteps / (2 * unmaskingSteps));
        var options = new Id3Options((long)(entries * BudgetShare), unmaskingSteps, interval, Seed: 1);
        var id3 = new Id3Unmasking(classifier, names, options);
        return new SelectiveTraining(id3, id3.Parameters, id3, options.Budget);
    }

    /// <summary>The encoder's weights SPT chooses from: its matrices and its vectors (biases, norms), embeddings aside.</summary>
    /// <param name="classifier">The classifier.</param>
    public static IReadOnlyList<string> MatricesAndVectors(SentimentClassifier classifier)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        return classifier.named_parameters()
            .Where(p => p.name.StartsWith("encoder.", StringComparison.Ordinal) && p.parameter.dim() is 1 or 2 && !p.name.Contains("embed", StringComparison.OrdinalIgnoreCase))
            .Select(p => p.name)
            .ToArray();
    }

    /// <summary>SPT with the paper's settings (8 sensitivity batches, LoRA r = 8 where a matrix holds r(in + out)/5 selected
    /// entries, vectors fully tuned from dim/5) and a budget of 1% of the encoder's matrix entries, as ID³'s.</summary>
    /// <param name="classifier">The classifier.</param>
    /// <param name="totalSteps">Not used (SPT decides before training).</param>
    /// <param name="batchLoss">The first epoch's batch losses, for the sensitivities.</param>
    public static SelectiveTraining Spt(SentimentClassifier classifier, int totalSteps, Func<int, Tensor> batchLoss)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        var parameters = classifier.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        long entries = Matrices(classifier).Sum(n => parameters[n].numel());
        var plan = global::Peft.Spt.Plan(classifier, MatricesAndVectors(classifier), batchLoss, new SptOptions((long)(entries * BudgetShare)));
        var spt = global::Peft.Spt.Apply(classifier, plan);
        Console.Error.WriteLine(
            $"  spt: {plan.Weights.Count(w => w.Tuning == SptTuning.Structured)} matrices get LoRA r 8, {plan.Weights.Count(w => w.Tuning == SptTuning.Unstructured)} weights train selected entries, "
            + $"{plan.Weights.Count(w => w.Tuning == SptTuning.Full)} vectors train fully, {plan.Weights.Count(w => w.Tuning == SptTuning.Frozen)} stay frozen; {spt.TrainedCount:N0} values train");
        return new SelectiveTraining(spt.Masks, spt.Parameters, spt, spt.TrainedCount);
    }
}
