// Package blip is the BLIP model: the ViT, the MED text transformer in its three modes
// (unimodal encoder, image-grounded encoder, image-grounded decoder), the ITC/ITM/LM heads,
// the decoding cache, and checkpoint loading and saving (the Salesforce↔HF key table).
// Checkpoint file formats live in blip/checkpoint, the tokenizer in blip/tokenizer and
// image decoding and preprocessing in package imageproc.
//
// # Training
//
// The numerical core of training follows blip-spec.md §6–§7 (the original's behaviour):
//
//   - Pretrainer (NewPretrainer) holds the momentum model (Momentum: EMA copies of the
//     ViT, vision_proj, text encoder and text_proj, m = 0.995) and the feature queues
//     (FeatureQueues); its Losses are one step's ITC (queues, momentum distillation),
//     ITM (hard negatives drawn from the online similarities) and LM (label smoothing
//     0.1), Total = ITC + ITM + LM. Inside a step it clamps temp, updates the momentum
//     model before its forward pass and writes the queues after the ITC loss.
//   - RetrievalTrainer: the filter's finetune (ITC with same-image positives over batch
//     and queue, ITM; NegativeAllRank draws negatives from every process).
//   - CaptionTrainer: the captioner's finetune (LM with the prompt masked).
//   - Model.InitRandom, InitVision (timm/DeiT ViT), InitText (bert-base-uncased): the
//     pretraining initialisation. Model.SetTrainable, Model.AdamWGroups (one group, weight
//     decay on every parameter), PretrainAlpha and RetrievalAlpha (the α ramps).
//   - Gatherer (nil for one process) is what data-parallel training plugs in: the queue
//     write gathers the momentum features of every process.
//
// A step makes its tensors in the scope it is given; closing the scope after the
// optimizer step frees all of them. A pretraining loop:
//
//	m, _ := blip.New(cfg, blip.AllParts()) // cfg.Text.Dropout = 0.1 as bert_config.json
//	_ = m.InitRandom(g)
//	_, _ = m.InitVision("deit_base_patch16_224.pth")
//	_, _ = m.InitText("bert-base-uncased/")
//	_ = m.SetTrainable(true)
//	p, _ := blip.NewPretrainer(m, blip.DefaultQueueSize, g) // p.Gather, p.Negatives as needed
//	opt, _ := torch.NewAdamW(m.AdamWGroups(lr0, blip.WeightDecay)...)
//	for epoch, i := ... {
//		s := torch.NewScope()
//		_ = opt.SetLR(0, lr(epoch, i))
//		_ = opt.ZeroGrad()
//		l, err := p.Losses(s, blip.Batch{Pixels: px, IDs: ids, Mask: mask},
//			blip.StepOptions{Alpha: blip.PretrainAlpha(0.4, epoch, i, stepsPerEpoch), Train: true})
//		_ = l.Total.Backward()
//		_ = opt.Step()
//		s.Close()
//	}
//
// Resuming bit for bit needs, beside the weights and opt.Save: p.Momentum.State(),
// p.Queues.State(), the state of p.Negatives and of torch's default generator of the
// device (dropout), and the data position.
package blip
