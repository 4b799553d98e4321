namespace Peft.Text;

/// <summary>
/// One tokenized training example: input ids and either per-token labels (causal language modelling) or one class label.
/// </summary>
/// <remarks>
/// Per-token labels are already shifted: <c>TokenLabels[i]</c> is the id the model should predict after reading
/// <c>InputIds[0..i]</c>, and <see cref="IgnoreIndex"/> (-100) marks positions without loss. A loss is then
/// <c>cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index: -100)</c> with no further shift.
/// </remarks>
/// <param name="InputIds">The token ids fed to the model.</param>
/// <param name="TokenLabels">Per-token targets, the same length as <paramref name="InputIds"/>, or null.</param>
/// <param name="ClassLabel">A sequence-level class index, or null.</param>
public sealed record TokenizedExample(IReadOnlyList<int> InputIds, IReadOnlyList<int>? TokenLabels = null, int? ClassLabel = null)
{
    /// <summary>The label that marks a position without loss (PyTorch's and Hugging Face's <c>ignore_index</c>).</summary>
    public const int IgnoreIndex = -100;
}
