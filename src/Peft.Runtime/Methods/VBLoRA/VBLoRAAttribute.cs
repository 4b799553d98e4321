namespace Peft;

/// <summary>
/// Adds a VB-LoRA adapter ("VB-LoRA: Extreme Parameter Efficient Fine-Tuning with Vector Banks"; Hugging Face PEFT's
/// <c>vblora</c>) to a linear layer: <c>ΔW = B A</c> (no scaling), where every length-L sub-vector of A <c>[r, in]</c> and
/// B <c>[out, r]</c> is a top-k softmax mixture of the vectors of one trainable bank <c>[N, L]</c> shared by every layer of
/// the adapter, chosen by per-layer logits.
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>
/// whose in and out features are multiples of the vector length (PEFT0022). The update is not zero at creation (random
/// logits and bank, as in PEFT). The bank is one parameter for all the adapter's layers, created when the model is complete
/// (the model-level operations, or <c>model.BindSharedTensors()</c> before a first forward pass). Saved as PEFT's
/// <c>VBLoRAConfig</c> with tensors <c>vblora_logits_A</c>, <c>vblora_logits_B</c> and <c>base_model.vblora_vector_bank</c>.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class VBLoRAAttribute : Attribute
{
    /// <summary>Declares a VB-LoRA adapter.</summary>
    /// <param name="rank">The rank r of A and B (positive; PEFT's default is 4).</param>
    /// <param name="numVectors">PEFT's <c>num_vectors</c>: N, the vectors in the bank (256).</param>
    /// <param name="vectorLength">PEFT's <c>vector_length</c>: L, which must divide the layer's in and out features (256).</param>
    public VBLoRAAttribute(int rank = 4, int numVectors = 256, int vectorLength = 256)
    {
        Rank = rank;
        NumVectors = numVectors;
        VectorLength = vectorLength;
    }

    /// <summary>The rank r.</summary>
    public int Rank { get; }

    /// <summary>PEFT's <c>num_vectors</c>.</summary>
    public int NumVectors { get; }

    /// <summary>PEFT's <c>vector_length</c>.</summary>
    public int VectorLength { get; }

    /// <summary>PEFT's <c>topk</c>: how many bank vectors each sub-vector mixes, in [1, NumVectors] (PEFT0023; default 2).</summary>
    public int TopK { get; set; } = 2;

    /// <summary>PEFT's <c>vblora_dropout</c>, in [0, 1): dropout on the adapter's input, in training only.</summary>
    public double Dropout { get; set; }

    /// <summary>PEFT's <c>init_vector_bank_bound</c>: the bank starts uniform in ±bound (default 0.02).</summary>
    public double InitVectorBankBound { get; set; } = 0.02;

    /// <summary>PEFT's <c>init_logits_std</c>: the logits start normal with this standard deviation (default 0.1).</summary>
    public double InitLogitsStd { get; set; } = 0.1;

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}
