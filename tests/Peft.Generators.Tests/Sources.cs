namespace Peft.Generators.Tests;

/// <summary>Representative user code. Each source compiles warning-free together with the generated code.</summary>
internal static class Sources
{
    /// <summary>LoRA + Kronecker + plain module, parameter and buffer members in a block namespace.</summary>
    public const string Attention = """
        using Peft;
        using TorchSharp.Modules;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels
        {
            /// <summary>An attention-like block.</summary>
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                private const int Dim = 64;

                [LoRA(rank: 8, alpha: 16)] private Module<Tensor, Tensor> q_proj = Linear(Dim, Dim);
                [Kronecker(rank: 4)] private Module<Tensor, Tensor> v_proj;
                private Module<Tensor, Tensor> o_proj = Linear(Dim, Dim);
                private Parameter scale = new Parameter(ones(1));
                private Tensor mask = zeros(Dim);
                private readonly int heads = 4;

                /// <summary>Builds the block.</summary>
                public Attention() : base(nameof(Attention))
                {
                    v_proj = Linear(Dim, Dim);
                    InitializePeft();
                }

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => o_proj.call(q_proj.call(x) + v_proj.call(x)) * scale * heads + mask;
            }
        }
        """;

    /// <summary>A generic class nested in a generic class and a struct, file-scoped namespace.</summary>
    public const string NestedGeneric = """
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels.Nested;

        /// <summary>Outer container.</summary>
        /// <typeparam name="TConfig">Configuration.</typeparam>
        public partial class Outer<TConfig> where TConfig : class
        {
            /// <summary>Middle container.</summary>
            public partial struct Registry
            {
                /// <summary>A generic block.</summary>
                /// <typeparam name="T">A marker.</typeparam>
                /// <typeparam name="event">Another marker, named with a keyword.</typeparam>
                public sealed partial class Block<T, @event> : Module<Tensor, Tensor> where T : struct
                {
                    [LoRA(4, 4.0)] private Module<Tensor, Tensor> proj;

                    /// <summary>Builds the block.</summary>
                    public Block() : base("Block")
                    {
                        proj = Linear(inputSize: 16, outputSize: 8);
                        InitializePeft();
                    }

                    /// <inheritdoc />
                    public override Tensor forward(Tensor x) => proj.call(x);
                }
            }
        }
        """;

    /// <summary>Prompt tuning with an init text that needs escaping, and a second named prompt.</summary>
    public const string PromptTuning = """
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels.Prompts
        {
            /// <summary>Token embedding with prompts.</summary>
            public sealed partial class PromptModel : Module<Tensor, Tensor>
            {
                [PromptTune(10, InitText = "Classify \"this\" review:\n\tpositive or negative? \\ ü \u2028 end")]
                [PromptTune(virtualTokens: 5, Name = "other")]
                private Module<Tensor, Tensor> embed = Embedding(100, 16);

                /// <summary>Builds the model.</summary>
                public PromptModel() : base(nameof(PromptModel)) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor ids) => embed.call(ids);
            }
        }
        """;

    /// <summary>[Freeze] on a class, [Freeze]/[Trainable] members, LoRA with every option, global namespace.</summary>
    public const string FreezeTrainable = """
        using Peft;
        using TorchSharp.Modules;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        /// <summary>A frozen encoder.</summary>
        [Freeze]
        public sealed partial class FrozenEncoder : Module<Tensor, Tensor>
        {
            private Module<Tensor, Tensor> layer = Linear(8, 8);

            /// <summary>Builds the encoder.</summary>
            public FrozenEncoder() : base(nameof(FrozenEncoder)) => InitializePeft();

            /// <inheritdoc />
            public override Tensor forward(Tensor x) => layer.call(x);
        }

        /// <summary>A classifier over the encoder.</summary>
        public sealed partial class Classifier : Module<Tensor, Tensor>
        {
            [Freeze] private FrozenEncoder backbone = new FrozenEncoder();
            [LoRA(4, 8, 0.1, UseRsLora = true, Init = LoRAInit.Gaussian, Name = "task")] private Module<Tensor, Tensor> proj = Linear(8, 8);
            [Trainable] private Module<Tensor, Tensor> head = Linear(8, 2);
            [Freeze] private Parameter? bias;
            [Trainable] private int epochs;

            /// <summary>Builds the classifier.</summary>
            public Classifier(bool withBias) : base(nameof(Classifier))
            {
                if (withBias) bias = new Parameter(zeros(2));
                epochs = 1;
                InitializePeft();
            }

            /// <inheritdoc />
            public override Tensor forward(Tensor x)
            {
                var y = head.call(proj.call(backbone.call(x))) * epochs;
                return bias is null ? y : y + bias;
            }
        }
        """;

    /// <summary>Annotated properties (including an adapted non-generic Module and a keyword name), file-scoped namespace.</summary>
    public const string Properties = """
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels.Props;

        /// <summary>Layers held in properties.</summary>
        public sealed partial class PropertyModel : Module<Tensor, Tensor>
        {
            /// <summary>The query projection.</summary>
            [LoRA(rank: 2, alpha: 16.5)] public Module<Tensor, Tensor> Query { get; private set; } = Linear(16, 16);

            [Kronecker(2, 1e-3, Factor = 4, DecomposeBoth = true, Name = "lokr")] private Module Key { get; set; } = Linear(16, 16);

            [Trainable] private Module<Tensor, Tensor> @base { get; } = Linear(16, 16);

            /// <summary>The frozen output head.</summary>
            [Freeze] public Module<Tensor, Tensor>? Head { get; set; }

            private Module<Tensor, Tensor> Unregistered { get; } = Linear(16, 16);

            /// <summary>Builds the model.</summary>
            public PropertyModel() : base(nameof(PropertyModel)) => InitializePeft();

            /// <inheritdoc />
            public override Tensor forward(Tensor x)
            {
                var key = ((Module<Tensor, Tensor>)Key).call(x);
                var y = Unregistered.call(@base.call(Query.call(x) + key));
                return Head is null ? y : Head.call(y);
            }
        }
        """;

    /// <summary>Three named adapters (two LoRA, one Kronecker) on one layer.</summary>
    public const string MultiAdapter = """
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels.Multi
        {
            /// <summary>A layer with several adapters.</summary>
            public sealed partial class MultiAdapterModel : Module<Tensor, Tensor>
            {
                [LoRA(8, 16)]
                [LoRA(rank: 4, alpha: 4, dropout: 0.05, Name = "fast")]
                [Kronecker(rank: 2, alpha: 2, Name = "lokr")]
                private Module<Tensor, Tensor> fc = Linear(32, 32);

                [LoRA(2, Name = "maybe")] private Module<Tensor, Tensor>? optional = Linear(32, 32);

                /// <summary>Builds the model.</summary>
                public MultiAdapterModel() : base(nameof(MultiAdapterModel)) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => optional is null ? fc.call(x) : optional.call(fc.call(x));
            }
        }
        """;

    /// <summary>A PEFT class deriving from another: the derived descriptor property hides the base one with <c>new</c>.</summary>
    public const string Inheritance = """
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels.Inheritance
        {
            /// <summary>A base block with an adapter.</summary>
            public abstract partial class BaseBlock : Module<Tensor, Tensor>
            {
                [LoRA] private Module<Tensor, Tensor> inner = Linear(8, 8);
                [Trainable] private Module<Tensor, Tensor> head = Linear(8, 8);

                /// <summary>Builds the base block.</summary>
                protected BaseBlock(string name) : base(name) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => head.call(inner.call(x));
            }

            /// <summary>A derived block with more declarations.</summary>
            public sealed partial class DerivedBlock : BaseBlock
            {
                [Kronecker(2)] private Module<Tensor, Tensor> outer = Linear(8, 8);
                [Freeze] private Module<Tensor, Tensor> norm = LayerNorm(8);

                /// <summary>Builds the derived block.</summary>
                public DerivedBlock() : base(nameof(DerivedBlock)) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => norm.call(outer.call(base.forward(x)));
            }
        }
        """;

    /// <summary>[Adaptable] without member attributes: targetable, cast and untargetable linear members, a non-linear module.</summary>
    public const string Adaptable = """
        using Peft;
        using TorchSharp.Modules;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels.Targets
        {
            /// <summary>A feed-forward block that configuration targeting may adapt.</summary>
            [Adaptable]
            public sealed partial class FeedForward : Module<Tensor, Tensor>
            {
                private Module<Tensor, Tensor> up = Linear(16, 32);
                private Module gate = Linear(16, 32);
                private readonly Linear down = Linear(32, 16);
                private Module<Tensor, Tensor> act = ReLU();
                private ModuleList<Module<Tensor, Tensor>> extra = new ModuleList<Module<Tensor, Tensor>>();

                /// <summary>Builds the block.</summary>
                public FeedForward() : base(nameof(FeedForward)) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x)
                    => down.call(act.call(up.call(x)) * ((Module<Tensor, Tensor>)gate).call(x)) + extra.Count;
            }
        }
        """;

    /// <summary>
    /// Sibling projections: a Llama-like attention (q/k/v called with x, o_proj with the attention's output), a Llama MLP
    /// (gate/up with x, down with their product) and a BERT-like attention whose forward reaches q/k/v through a helper,
    /// grouped with [FuseProjections] instead.
    /// </summary>
    public const string Siblings = """
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace MyModels.Siblings
        {
            /// <summary>A Llama-like attention.</summary>
            public sealed partial class SelfAttention : Module<Tensor, Tensor>
            {
                private const int Dim = 16;

                [LoRA(4)] private Module<Tensor, Tensor> q_proj = Linear(Dim, Dim, hasBias: false);
                [LoRA(4)] private Module<Tensor, Tensor> k_proj = Linear(Dim, Dim / 2, hasBias: false);
                [DoRA(4)] private Module<Tensor, Tensor> v_proj = Linear(Dim, Dim / 2, hasBias: false);
                [LoRA(4)] private Module<Tensor, Tensor> o_proj = Linear(Dim, Dim, hasBias: false);

                /// <summary>Builds the attention.</summary>
                public SelfAttention() : base(nameof(SelfAttention)) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x)
                {
                    var q = q_proj.call(x);
                    var k = this.k_proj.call(x);
                    var v = v_proj.forward(x);
                    var scores = functional.softmax(q.narrow(-1, 0, Dim / 2).matmul(k.transpose(-2, -1)), -1);
                    var attended = cat(new[] { scores.matmul(v), scores.matmul(v) }, -1);
                    return o_proj.call(attended);
                }
            }

            /// <summary>A Llama MLP.</summary>
            public sealed partial class Mlp : Module<Tensor, Tensor>
            {
                [LoRA(2)] private Module<Tensor, Tensor> gate_proj = Linear(16, 32, hasBias: false);
                [LoRA(2)] private Module<Tensor, Tensor> up_proj = Linear(16, 32, hasBias: false);
                [LoRA(2)] private Module<Tensor, Tensor> down_proj = Linear(32, 16, hasBias: false);

                /// <summary>Builds the MLP.</summary>
                public Mlp() : base(nameof(Mlp)) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => down_proj.call(functional.silu(gate_proj.call(x)) * up_proj.call(x));
            }

            /// <summary>A BERT-like attention whose projections forward reaches through a helper.</summary>
            public sealed partial class DeclaredAttention : Module<Tensor, Tensor>
            {
                [LoRA(2), FuseProjections("qkv")] private Module<Tensor, Tensor> query = Linear(16, 16);
                [LoRA(2), FuseProjections("qkv")] private Module<Tensor, Tensor> key = Linear(16, 16);
                [LoRA(2), FuseProjections("qkv")] private Module<Tensor, Tensor> value = Linear(16, 16);
                [LoRA(2)] private Module<Tensor, Tensor> dense = Linear(16, 16);

                /// <summary>Builds the attention.</summary>
                public DeclaredAttention() : base(nameof(DeclaredAttention)) => InitializePeft();

                /// <inheritdoc />
                public override Tensor forward(Tensor x) => dense.call(Mix(x));

                private Tensor Mix(Tensor h) => query.call(h) + key.call(h) + value.call(h);
            }
        }
        """;

    /// <summary>Every snapshot case: name and source.</summary>
    public static readonly (string Name, string Source)[] All =
    {
        (nameof(Attention), Attention),
        (nameof(NestedGeneric), NestedGeneric),
        (nameof(PromptTuning), PromptTuning),
        (nameof(FreezeTrainable), FreezeTrainable),
        (nameof(Properties), Properties),
        (nameof(MultiAdapter), MultiAdapter),
        (nameof(Inheritance), Inheritance),
        (nameof(Adaptable), Adaptable),
        (nameof(Siblings), Siblings),
    };
}
