using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// The base layer's parameters an adapter merges into: the weight (<c>[out, in]</c> for a linear layer, <c>[vocabulary, dim]</c>
/// for an embedding, <c>[dim]</c> for a norm) and the bias, if any. Merges change them in place under <c>no_grad</c>.
/// A file-level merge passes the tensors read from a checkpoint (transposed views for Conv1D layouts), so the same
/// per-method math serves <see cref="AdaptedLayer.Merge"/> and <c>peft merge</c>.
/// </summary>
/// <param name="Weight">The base weight.</param>
/// <param name="Bias">The base bias, or null.</param>
public sealed record LayerParameters(Tensor Weight, Tensor? Bias);

/// <summary>An adapter whose effect can be folded into the base layer's parameters and taken out again.</summary>
public interface IMergeableAdapter
{
    /// <summary>Folds the adapter into <paramref name="target"/> in place (called under <c>no_grad</c>).</summary>
    /// <param name="target">The base parameters.</param>
    void MergeInto(LayerParameters target);

    /// <summary>Takes a merged adapter out of <paramref name="target"/> in place (called under <c>no_grad</c>). Exact for
    /// additive updates up to rounding; methods that multiply (IA3) or rescale (DoRA) say how exact they are.</summary>
    /// <param name="target">The merged parameters.</param>
    void UnmergeFrom(LayerParameters target);
}

/// <summary>
/// An additive update <c>y += Δ(x)</c> with a dense equivalent <c>ΔW</c> (LoRA, LoKr, ...): the forward adds its
/// contribution in place after the base product, and merging is <c>W += ΔW</c> (the default implementation).
/// </summary>
public interface IAdditiveAdapter : IMergeableAdapter
{
    /// <summary>Adds the adapter's contribution to <paramref name="output"/> in place. The layer passes a 2-D input
    /// <c>[N, in]</c> and a contiguous 2-D output <c>[N, out]</c>. Dropout (if any) applies only in training mode.</summary>
    /// <param name="input">The layer input.</param>
    /// <param name="output">The layer output, updated in place.</param>
    void AddTo(Tensor input, Tensor output);

    /// <summary>The dense update <c>ΔW</c> in the base weight's layout (scaling included); the caller disposes it. Call under
    /// <c>no_grad</c> unless gradients are wanted.</summary>
    /// <returns>A new tensor.</returns>
    Tensor DeltaWeight();

    void IMergeableAdapter.MergeInto(LayerParameters target)
    {
        using var delta = DeltaWeight();
        target.Weight.add_(delta);
    }

    void IMergeableAdapter.UnmergeFrom(LayerParameters target)
    {
        using var delta = DeltaWeight();
        target.Weight.sub_(delta);
    }
}

/// <summary>
/// An adapter whose update is a low-rank product <c>s · B A</c> on a dropped-out input (LoRA, DoRA and their variants): it
/// exposes its factors so that a layer can run it through a fused kernel with its own backward.
/// </summary>
public interface ILowRankFactors
{
    /// <summary>The down projection A <c>[r, in]</c>.</summary>
    Parameter Down { get; }

    /// <summary>The up projection B <c>[out, r]</c>.</summary>
    Parameter Up { get; }

    /// <summary>The scaling s.</summary>
    double Scaling { get; }

    /// <summary>The dropout probability on the adapter's input (0 when none); applied in training mode only.</summary>
    double Dropout { get; }

    /// <summary>False while the factors cannot be used yet (CorDA before calibration): paths that read the factors directly
    /// (the fused kernel, sibling products) then leave the layer to the adapter's own forward, which says what to do.</summary>
    bool FactorsReady => true;
}

/// <summary>
/// An additive update that is a low-rank product <c>ΔW = s · B A</c> (LoRA and its variants).
/// </summary>
public interface ILowRankAdapter : IAdditiveAdapter, ILowRankFactors
{
}

/// <summary>
/// Scales the layer's input (<c>y = base(x ⊙ l)</c>) or its output (<c>y = base(x) ⊙ l</c>, bias included) by a learned
/// vector (IA3). Several active scalings multiply. Merging multiplies the weight's columns (input) or rows and the bias
/// (output).
/// </summary>
public interface IScalingAdapter : IMergeableAdapter
{
    /// <summary>True when the adapter scales the input features, false when it scales the outputs.</summary>
    bool ScalesInput { get; }

    /// <summary>The scale as a flat vector: <c>[in]</c> when <see cref="ScalesInput"/>, else <c>[out]</c>. A new tensor (a view
    /// of the parameter, so gradients reach it); the caller disposes it.</summary>
    /// <returns>The scale.</returns>
    Tensor Scale();
}

/// <summary>
/// Rescales the rows of the adapted weight (DoRA: <c>W' = diag(m / ‖W + ΔW‖) (W + ΔW)</c>). The layer computes the bias-free
/// base product once and asks each such adapter for its row scale <c>c</c> and its own low-rank term, so that
/// <c>y = (1 + Σ(c_k − 1)) ⊙ W x + Σ c_k ⊙ ΔW_k x + b</c>; with one such adapter (the usual case) that is
/// <c>y = c ⊙ (W x + ΔW x) + b</c>: the update is accumulated into the base product in place, then scaled once.
/// </summary>
public interface IRowRescalingAdapter : IMergeableAdapter
{
    /// <summary>False when the adapter cannot share the layer's base product this forward (DoRA in training with dropout,
    /// whose base term uses the dropped-out input): the layer then calls <see cref="AddSeparately"/>.</summary>
    bool SharesBaseProduct { get; }

    /// <summary>The row scale <c>c = m / ‖W + ΔW‖</c> <c>[out]</c> for the current weight (the norm detached).</summary>
    /// <param name="weight">The layer's current base weight <c>[out, in]</c>.</param>
    /// <returns>A new tensor.</returns>
    Tensor RowScale(Tensor weight);

    /// <summary>Adds the unscaled update <c>ΔW x</c> to <paramref name="output"/> in place (the layer applies the row scale).</summary>
    /// <param name="input">The layer input <c>[N, in]</c>.</param>
    /// <param name="output">The output <c>[N, out]</c>.</param>
    void AddUpdate(Tensor input, Tensor output);

    /// <summary>Adds the adapter's whole contribution when it cannot share the base product
    /// (<see cref="SharesBaseProduct"/> is false).</summary>
    /// <param name="input">The layer input <c>[N, in]</c>.</param>
    /// <param name="output">The output so far <c>[N, out]</c>, updated in place.</param>
    /// <param name="weight">The base weight.</param>
    void AddSeparately(Tensor input, Tensor output, Tensor weight);
}

/// <summary>
/// Rewrites the weight the layer's base product uses (HiRA: <c>W' = W ⊙ (1 + B A)</c>), for an update that depends on the
/// base weight element by element. The layer forms the effective weight once per forward and runs one base product
/// <c>y = x W'ᵀ + b</c> instead of the base product plus a second full-size product for the update; autograd reaches the
/// adapter's parameters through <c>W'</c> (the frozen base weight gets no gradient).
/// </summary>
/// <remarks>
/// Composition in <see cref="AdaptedLinear"/>: input scaling first (it scales the columns of <c>W'</c>, which commutes with an
/// element-wise rewrite), then the rewritten base product, then additive updates, then output scaling; that is also the merge
/// order. Several live rewriting adapters apply in activation order, <c>W' = R_2(R_1(W))</c>, which is what merging them one
/// after the other gives. A layer refuses a rewriting adapter live together with a row-rescaling one
/// (<see cref="IRowRescalingAdapter"/>, DoRA): DoRA's norm is of the weight it is given and HiRA's factor multiplies the
/// weight it is given, so the two orders are different functions and neither is PEFT's.
/// Merging every active adapter (<see cref="AdaptedLayer.Merge"/> without a name) keeps the function; merging an additive
/// adapter alone by name while a rewriter stays live changes the weight the rewriter multiplies, as it changes the weight
/// whose row norms DoRA takes.
/// </remarks>
public interface IWeightRewritingAdapter : IMergeableAdapter
{
    /// <summary>False when the adapter cannot act through the rewritten weight this forward (HiRA in training with dropout,
    /// whose update term uses the dropped-out input): the layer then runs the base product without it and calls
    /// <see cref="AddSeparately"/>.</summary>
    bool SharesBaseProduct { get; }

    /// <summary>The weight the base product uses, <c>[out, in]</c>, computed from <paramref name="weight"/> (the base weight, or
    /// the weight as rewritten by the adapters before this one). A new tensor that carries gradients to the adapter's
    /// parameters; the caller disposes it.</summary>
    /// <param name="weight">The weight so far <c>[out, in]</c>.</param>
    /// <returns>A new tensor.</returns>
    Tensor EffectiveWeight(Tensor weight);

    /// <summary>Adds the adapter's whole contribution when it cannot share the base product
    /// (<see cref="SharesBaseProduct"/> is false).</summary>
    /// <param name="input">The layer input <c>[N, in]</c> (after input scaling).</param>
    /// <param name="output">The output so far <c>[N, out]</c>, updated in place.</param>
    /// <param name="weight">The base weight.</param>
    void AddSeparately(Tensor input, Tensor output, Tensor weight);
}

/// <summary>
/// Replaces the base layer's parameters while active (LayerNorm tuning: a trained copy of the norm's weight and bias). Merging
/// writes the copy into the base layer and keeps the original for unmerging.
/// </summary>
public interface IParameterOverrideAdapter : IMergeableAdapter
{
    /// <summary>The weight used instead of the base weight.</summary>
    Tensor Weight { get; }

    /// <summary>The bias used instead of the base bias (null when the base has none).</summary>
    Tensor? Bias { get; }
}

/// <summary>
/// Replaces the base layer's bias while active (BitFit: a trained copy of the bias, Ben Zaken et al., 2022). A linear layer runs
/// its base product with this bias (<c>linear(x, W, b')</c>, so the update costs nothing beyond the bias add), a norm
/// normalises with it. Merging writes the copy into the bias and keeps the original for unmerging (exact). At most one
/// parameter-replacing adapter (this or <see cref="IParameterOverrideAdapter"/>) is live on a layer: two replacements of one
/// bias have no order.
/// </summary>
public interface IBiasOverrideAdapter : IMergeableAdapter
{
    /// <summary>The bias used instead of the base bias, <c>[out]</c> (a norm's: <c>[d]</c>): the parameter itself.</summary>
    Tensor Bias { get; }
}

/// <summary>
/// Scales and shifts the layer's output features after everything else the layer computes (SSF, Lian et al., 2022:
/// <c>y ← γ ⊙ y + β</c> on the last dimension). Several live ones apply in activation order. On a linear layer it is the last
/// stage of the forward (after output scaling); merging is <c>W' = diag(γ) W</c>, <c>b' = γ ⊙ b + β</c>, which needs a bias.
/// On a LayerNorm it folds into the norm's own affine parameters (<c>w' = γ ⊙ w</c>, <c>b' = γ ⊙ b + β</c>) so the forward
/// stays one <c>layer_norm</c>; on a custom norm (<see cref="IAdaptableNorm"/>) it applies to the norm's output.
/// </summary>
public interface IFeatureAffineAdapter : IMergeableAdapter
{
    /// <summary>The scale γ <c>[out]</c>: the parameter itself (the layer does not dispose it).</summary>
    Tensor Scale { get; }

    /// <summary>The shift β <c>[out]</c>: the parameter itself.</summary>
    Tensor Shift { get; }
}

/// <summary>
/// An adapter whose initial values depend on the base layer's parameters (DoRA's magnitude is the row norm of the weight;
/// SVD-initialised methods read the weight). The layer calls <see cref="InitializeFromBase"/> once, under <c>no_grad</c>, when
/// the adapter joins it, with the layer's current parameters (merged adapters included, as in PEFT), and again on
/// <see cref="AdaptedLayer.ReinitializeFromBase"/>.
/// </summary>
public interface IBaseInitializedAdapter
{
    /// <summary>Initialises the adapter from the base parameters. It must not replace them, and it changes their values only
    /// when it is an <see cref="IBaseRewritingAdapter"/> whose <see cref="IBaseRewritingAdapter.RewritesBase"/> is true.</summary>
    /// <param name="layer">The base parameters.</param>
    void InitializeFromBase(LayerParameters layer);
}

/// <summary>
/// An adapter whose initialisation rewrites the base weight (PiSSA, OLoRA, LoftQ, and later KaSA, CorDA): it takes a part
/// <c>P</c> of the weight into its own factors and leaves the residual <c>W_res = W − P</c> in the base, in place, so the
/// adapted layer still computes <c>W</c> at the start. What the layer does with such an adapter (docs/ARCHITECTURE.md,
/// "Adapters that rewrite the base"): it refuses to add one while anything is merged (the residual would hold the merged
/// update), records a fingerprint of the residual it leaves and checks it at every model-level operation, so a base checkpoint
/// loaded after the adapter was created (which would pair the adapter with the original weight and so count <c>P</c> twice) fails
/// with the fix instead of computing something else. Merging adds the adapter's update to the residual and unmerging restores
/// the residual; disabling gives the residual model and deleting leaves the residual in the base (both as PEFT).
/// </summary>
public interface IBaseRewritingAdapter : IBaseInitializedAdapter
{
    /// <summary>True when this adapter's initialisation rewrites the base weight (a LoRA adapter does only with PiSSA or OLoRA).</summary>
    bool RewritesBase { get; }

    /// <summary>The initialisation's name for messages, e.g. <c>PiSSA (init_lora_weights "pissa")</c>.</summary>
    string BaseRewriteName { get; }
}

/// <summary>
/// A base-rewriting adapter whose residual is a quantized weight (LoftQ: the base becomes <c>Q = dequant(quant(·))</c> and the
/// adapter holds the low-rank rest of <c>W − Q</c>). Its initialisation computes the quantized codes itself, so
/// <see cref="AdaptedLinear.QuantizeBase"/> with <see cref="ResidualFormat"/> stores exactly those codes (re-quantizing the
/// dequantized <c>Q</c> would not reproduce it: NF4's absmaxes are quantized again around their mean), and the layer's
/// residual fingerprint then reads the dequantized weight (docs/ARCHITECTURE.md, "Adapters that rewrite the base").
/// </summary>
public interface IQuantizedResidualAdapter : IBaseRewritingAdapter
{
    /// <summary>The format the residual was quantized with, or null when this adapter's residual is not quantized (a LoRA
    /// adapter's is only with LoftQ).</summary>
    QuantizationFormat? ResidualFormat { get; }

    /// <summary>Hands over the quantized residual from the last initialisation (its buffers become the layer's); null when
    /// there is none or it was handed over already.</summary>
    /// <returns>The quantized residual, or null.</returns>
    QuantizedWeight? TakeQuantizedResidual();
}

/// <summary>Prepends learned vectors to a sequence of embeddings (prompt tuning, DePT's prompt, P-tuning's encoded prompt); not
/// mergeable. The prefix may be a parameter (a table) or computed from parameters on every forward (P-tuning's prompt encoder).</summary>
public interface IPrefixAdapter
{
    /// <summary>The prefix <c>[V, dim]</c>, in the autograd graph: a view of the table for a table prompt, the encoder's output
    /// for an encoded one. A new tensor handle each call; the caller disposes it.</summary>
    /// <returns>The prefix.</returns>
    Tensor ComputePrefix();

    /// <summary>The number of prepended positions V.</summary>
    int Length { get; }
}

/// <summary>
/// Adds a learned table to the token embeddings, position by position, before any prefix is prepended (DePT's low-rank
/// update of the input embeddings: <c>E' = E(ids) + ΔE</c> with <c>ΔE</c> <c>[Positions, dim]</c> broadcast over the
/// batch). The table belongs to positions, not to tokens, so it cannot be folded into the vocabulary embedding (not
/// mergeable), and the input must hold exactly <see cref="Positions"/> tokens: <see cref="AdaptedEmbedding"/> refuses any
/// other length naming the member and the fix (pad or truncate to that length).
/// </summary>
public interface IPositionOffsetAdapter
{
    /// <summary>The number of token positions the table covers (DePT's <c>max_length</c>).</summary>
    int Positions { get; }

    /// <summary>Computes the table <c>[Positions, dim]</c> from the adapter's parameters (a new tensor, part of the autograd
    /// graph; the caller disposes it).</summary>
    /// <returns>The table.</returns>
    Tensor ComputeOffset();
}

/// <summary>
/// An adapter that supplies a term of the training objective (KaSA's regulariser on its singular values and the orthogonality
/// of its factors): the trainer adds it to the loss when <see cref="PeftModel.AdapterLossTerms"/> is among
/// <see cref="Peft.Training.TrainingOptions.Regularizers"/>. The forward does not change; without that regulariser the term is not used.
/// </summary>
public interface ILossTermAdapter
{
    /// <summary>The adapter's term: a new one-element tensor, differentiable in the adapter's parameters (the caller disposes it).</summary>
    /// <returns>A scalar tensor.</returns>
    Tensor LossTerm();
}

/// <summary>
/// An adapter whose PEFT file holds tensors computed from its parameters instead of the parameters themselves (P-tuning in
/// training mode: the file's <c>prompt_embeddings</c> is the prompt encoder's output, and PEFT saves no encoder).
/// <see cref="Serialization.AdapterFiles.Save"/> writes <see cref="ComputeFileTensors"/> in place of
/// <see cref="PeftAdapter.PeftTensors"/>, and the merged-adapter fingerprint hashes them, so the model's fingerprint is its
/// file's. Such a file cannot be loaded back into such an adapter (its parameters cannot be recovered from their output):
/// <see cref="Serialization.AdapterFiles.Load"/> refuses it naming the adapter and the fixes (load under a new adapter name,
/// which creates the adapter the file's config describes; resume training from a trainer checkpoint, which keeps every
/// parameter under its registered name).
/// </summary>
public interface IComputedFileTensorsAdapter
{
    /// <summary>Whether this adapter's file holds computed tensors now; false when its file tensors are its parameters
    /// (a P-tuning adapter in inference mode holds the prompt table itself), and it is then saved and loaded as any adapter.</summary>
    bool ComputesFileTensors { get; }

    /// <summary>The tensors the adapter's file holds, under PEFT's names relative to the layer, computed from the current
    /// parameters deterministically (dropout off) and detached from the graph; new tensors the caller disposes.</summary>
    /// <returns>(PEFT name, value) pairs.</returns>
    IReadOnlyList<(string PeftName, Tensor Value)> ComputeFileTensors();
}
